// XiangFlow's engine folds the events of an event-based gateway into one: model a sub-process
// with a boundary signal event instead (see the 公示 pattern).
const { is } = require('bpmnlint-utils');

module.exports = function() {
  function check(node, reporter) {
    if (is(node, 'bpmn:EventBasedGateway')) {
      reporter.report(node.id, '不支持事件网关:请改用子流程加边界信号事件');
    }
  }
  return { check };
};
