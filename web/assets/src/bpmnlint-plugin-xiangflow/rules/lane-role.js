// XiangFlow: a lane names the role that works its tasks, "中文名 (role_code)" or the bare "role_code".
// The server states the same two forms (engine/procedures/steps.py LANE_ROLE_RE) and also checks that the
// role exists; tests/unit/test_checks_registry.py runs lane names through both and compares.
const { is } = require('bpmnlint-utils');

const LANE_ROLE = /^(?:.*?\s*\(([a-z][a-z0-9_]{0,39})\)|\s*([a-z][a-z0-9_]{0,39}))\s*$/s;

function laneRole(name) {
  const match = LANE_ROLE.exec(name || '');
  return match ? (match[1] || match[2]) : null;
}

module.exports = function() {
  function check(node, reporter) {
    if (!is(node, 'bpmn:Lane') || (node.childLaneSet && (node.childLaneSet.lanes || []).length)) return;
    if (!laneRole(node.name)) {
      reporter.report(node.id, '泳道须写明角色:名称为 “中文名 (角色代码)” 或角色代码,如 村级工作专班 (village_cadre)');
    }
  }
  return { check };
};
module.exports.laneRole = laneRole;
