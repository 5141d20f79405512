// XiangFlow: every user task names the form (formKey) its page renders and the server validates.
const { is } = require('bpmnlint-utils');

function spiffProperty(node, name) {
  const values = (node.extensionElements && node.extensionElements.values) || [];
  for (const ext of values) {
    if (ext.$type === 'spiffworkflow:Properties') {
      const found = (ext.properties || []).find((p) => p.name === name);
      if (found) return found.value;
    }
  }
  return undefined;
}

module.exports = function() {
  function check(node, reporter) {
    if (is(node, 'bpmn:UserTask') && !spiffProperty(node, 'formKey')) {
      reporter.report(node.id, '用户任务须选择表单(formKey)');
    }
  }
  return { check };
};
