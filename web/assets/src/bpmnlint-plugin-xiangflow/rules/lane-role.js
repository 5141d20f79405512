// XiangFlow: a lane names the role that works its tasks, "中文名 (role_code)".
const { is } = require('bpmnlint-utils');

module.exports = function() {
  function check(node, reporter) {
    if (is(node, 'bpmn:Lane') && !/\(([a-z][a-z0-9_]*)\)\s*$/.test(node.name || '')) {
      reporter.report(node.id, '泳道须对应角色:名称以 (角色代码) 结尾,如 村级工作专班 (village_cadre)');
    }
  }
  return { check };
};
