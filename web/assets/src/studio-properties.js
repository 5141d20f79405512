// XiangFlow properties provider for bpmn-js-properties-panel: the group "乡流设置" holds what the
// engine reads from a diagram (README, "BPMN properties XiangFlow reads"):
//   lane            → role          (lane name "中文名 (role_code)")
//   user task       → formKey, actions (approve/reject/return), dueIn (number + unit) and dayKind, noticeKind (an issuance step),
//                     opinionRequired (true: every action needs an opinion), batchApproval (批量审批),
//                     attachments (accepted kinds or none)
//   business rule   → calledDecisionId (a decision of the draft's DMN files)
//   timer event     → days in natural days ("P15D") or working days (workdays(15))
//   sequence flow   → condition expression (out of exclusive/inclusive gateways)
//   script task     → script (lines of `name = expression`)
//   any flow node   → caseStatus, startsProcedure + passData
// Values are spiffworkflow:properties / spiffworkflow:calledDecisionId extension elements, written
// through the modeler's command stack (undo works) by the helpers exported below; the page's
// automation API (window.xiangflowStudio.properties) uses the same helpers.
// The property names and labels, actions, case statuses, attachment limits and the lane pattern are the
// engine's (engine/procedures/checks/rules.py editor_vocabulary, served in the page's config): call
// useVocabulary(config) before the panel is built; nothing here restates them.
import {
  CheckboxEntry,
  isCheckboxEntryEdited,
  isSelectEntryEdited,
  isTextAreaEntryEdited,
  isTextFieldEntryEdited,
  SelectEntry,
  TextAreaEntry,
  TextFieldEntry,
} from '@bpmn-io/properties-panel';
import { useService } from 'bpmn-js-properties-panel';
import { getBusinessObject, is } from 'bpmn-js/lib/util/ModelUtil';

import { DAY_KINDS, durationWords, formatDuration, parseDuration, UNITS } from './duration';

export const ACTIONS = [];
export const CASE_STATUS_LABELS = {};
const PROPERTY_LABELS = {};
const ATTACHMENTS = { none: 'none', reserved: [], maxLength: 0, maxKinds: 0 };
let LANE_ROLE = /$^/;

export function useVocabulary(config) {
  ACTIONS.splice(0, ACTIONS.length, ...config.actions);
  config.caseStatuses.forEach(([value, label]) => { CASE_STATUS_LABELS[value] = label; });
  Object.assign(PROPERTY_LABELS, config.properties);
  Object.assign(ATTACHMENTS, config.attachments);
  LANE_ROLE = new RegExp(config.lanePattern, 's');
}

// a property's label as the engine names it, with the name a BPMN expert looks for
function label(name, extra = '') {
  if (!(name in PROPERTY_LABELS)) throw new Error(`unknown step property ${name}`);
  return `${PROPERTY_LABELS[name]}${extra}(${name})`;
}

// ------------------------------------------------------------------ model helpers
export function getSpiffProperty(element, name) {
  const bo = getBusinessObject(element);
  const ext = bo.get('extensionElements');
  const props = ext && ext.get('values').find((v) => is(v, 'spiffworkflow:Properties'));
  const prop = props && props.get('properties').find((p) => p.name === name);
  return prop ? prop.value : undefined;
}

function ensureExtensionElements(element, bpmnFactory, commandStack) {
  const bo = getBusinessObject(element);
  let ext = bo.get('extensionElements');
  if (!ext) {
    ext = bpmnFactory.create('bpmn:ExtensionElements', { values: [] });
    ext.$parent = bo;
    commandStack.execute('element.updateModdleProperties', {
      element, moddleElement: bo, properties: { extensionElements: ext },
    });
  }
  return ext;
}

export function setSpiffProperty(injector, element, name, value) {
  const bpmnFactory = injector.get('bpmnFactory');
  const commandStack = injector.get('commandStack');
  const empty = value === undefined || value === null || value === '';
  const bo = getBusinessObject(element);
  if (empty && !getSpiffProperty(element, name)) return;
  const ext = ensureExtensionElements(element, bpmnFactory, commandStack);
  let props = ext.get('values').find((v) => is(v, 'spiffworkflow:Properties'));
  if (!props) {
    props = bpmnFactory.create('spiffworkflow:Properties', { properties: [] });
    props.$parent = ext;
    commandStack.execute('element.updateModdleProperties', {
      element, moddleElement: ext, properties: { values: [...ext.get('values'), props] },
    });
  }
  const existing = props.get('properties').find((p) => p.name === name);
  if (empty) {
    commandStack.execute('element.updateModdleProperties', {
      element, moddleElement: props, properties: { properties: props.get('properties').filter((p) => p !== existing) },
    });
  } else if (existing) {
    commandStack.execute('element.updateModdleProperties', {
      element, moddleElement: existing, properties: { value: String(value) },
    });
  } else {
    const prop = bpmnFactory.create('spiffworkflow:Property', { name, value: String(value) });
    prop.$parent = props;
    commandStack.execute('element.updateModdleProperties', {
      element, moddleElement: props, properties: { properties: [...props.get('properties'), prop] },
    });
  }
  return bo;
}

export function getCalledDecision(element) {
  const ext = getBusinessObject(element).get('extensionElements');
  const called = ext && ext.get('values').find((v) => is(v, 'spiffworkflow:CalledDecisionId'));
  return called ? called.value : undefined;
}

export function setCalledDecision(injector, element, decisionId) {
  const bpmnFactory = injector.get('bpmnFactory');
  const commandStack = injector.get('commandStack');
  const ext = ensureExtensionElements(element, bpmnFactory, commandStack);
  const others = ext.get('values').filter((v) => !is(v, 'spiffworkflow:CalledDecisionId'));
  const values = [...others];
  if (decisionId) {
    const called = bpmnFactory.create('spiffworkflow:CalledDecisionId', { value: decisionId });
    called.$parent = ext;
    values.push(called);
  }
  commandStack.execute('element.updateModdleProperties', { element, moddleElement: ext, properties: { values } });
}

export function roleOfLane(name) {
  const match = LANE_ROLE.exec(name || '');
  return match ? (match[1] || match[2]) : '';
}

export function setLaneRole(injector, lane, roleCode, roles) {
  const modeling = injector.get('modeling');
  const current = getBusinessObject(lane).name || '';
  const named = roleOfLane(current) ? current.slice(0, Math.max(current.lastIndexOf('('), 0)) : current;
  const role = roles.find((r) => r.code === roleCode);
  const chinese = named.trim() || (role ? role.name : '');
  modeling.updateProperties(lane, { name: roleCode ? `${chinese} (${roleCode})` : chinese });
}

export function getActions(element) {
  const raw = getSpiffProperty(element, 'actions');
  return (raw === undefined ? 'approve' : raw).split(',').map((a) => a.trim()).filter(Boolean);
}

export function setAction(injector, element, action, enabled) {
  const current = new Set(getActions(element));
  if (enabled) current.add(action); else current.delete(action);
  const ordered = ACTIONS.map(([a]) => a).filter((a) => current.has(a));
  setSpiffProperty(injector, element, 'actions', ordered.join(','));
}

function timerDefinition(element) {
  const bo = getBusinessObject(element);
  return (bo.get('eventDefinitions') || []).find((d) => is(d, 'bpmn:TimerEventDefinition'));
}

export function getTimerDays(element) {
  const def = timerDefinition(element);
  if (!def) return { kind: '', days: '' };
  const duration = def.get('timeDuration');
  const date = def.get('timeDate');
  let m;
  if (duration && (m = /^"P(\d+)D"$/.exec((duration.body || '').trim()))) return { kind: 'natural', days: m[1] };
  if (date && (m = /^workdays\((\d+)\)$/.exec((date.body || '').trim()))) return { kind: 'working', days: m[1] };
  return { kind: '', days: '' };
}

export function setTimerDays(injector, element, days, kind) {
  const def = timerDefinition(element);
  if (!def) return;
  const bpmnFactory = injector.get('bpmnFactory');
  const commandStack = injector.get('commandStack');
  const n = parseInt(days, 10);
  if (!(n > 0)) return;
  const working = kind === 'working';
  const body = working ? `workdays(${n})` : `"P${n}D"`;
  const expression = bpmnFactory.create('bpmn:FormalExpression', { body });
  expression.$parent = def;
  commandStack.execute('element.updateModdleProperties', {
    element, moddleElement: def,
    properties: { timeDuration: working ? undefined : expression, timeDate: working ? expression : undefined, timeCycle: undefined },
  });
}

export function setCondition(injector, flow, body) {
  const bpmnFactory = injector.get('bpmnFactory');
  const modeling = injector.get('modeling');
  if (!body) {
    modeling.updateProperties(flow, { conditionExpression: undefined });
    return;
  }
  const expression = bpmnFactory.create('bpmn:FormalExpression', { body });
  modeling.updateProperties(flow, { conditionExpression: expression });
}

// ------------------------------------------------------------------ entries
const ENTRY_KINDS = {
  text: [TextFieldEntry, isTextFieldEntryEdited],
  textarea: [TextAreaEntry, isTextAreaEntryEdited],
  select: [SelectEntry, isSelectEntryEdited],
  checkbox: [CheckboxEntry, isCheckboxEntryEdited],
};

// One panel entry: fields(element, injector) gives the entry's label, getValue, setValue, ...;
// only the text kinds use the debounce they are given.
function entry(id, kind, fields) {
  const [Entry, isEdited] = ENTRY_KINDS[kind];
  return {
    id,
    isEdited,
    component: ({ element }) => {
      const injector = useService('injector');
      const debounce = useService('debounceInput');
      return Entry({ element, id, debounce, ...fields(element, injector) });
    },
  };
}

const UNSET = { value: '', label: '(未设置)' };

function spiffText(id, name, label, description, validate) {
  return entry(id, 'text', (element, injector) => ({
    label, description, validate,
    getValue: () => getSpiffProperty(element, name) || '',
    setValue: (value) => setSpiffProperty(injector, element, name, (value || '').trim()),
  }));
}

function spiffSelect(id, name, label, options, description) {
  return entry(id, 'select', (element, injector) => ({
    label, description,
    getValue: () => getSpiffProperty(element, name) || '',
    setValue: (value) => setSpiffProperty(injector, element, name, value),
    getOptions: () => [UNSET, ...options()],
  }));
}

// engine/procedures/step_rules.py step_rule_problems' limits, as served (the server's check decides)
export function attachmentsProblem(value) {
  const raw = (value || '').trim();
  if (!raw || raw === ATTACHMENTS.none) return null;
  const labels = raw.replace(/，/g, ',').split(',').map((k) => k.trim());
  if (labels.some((k) => !k)) return '附件类别之间用逗号分隔,不能有空项';
  if (labels.some((k) => ATTACHMENTS.reserved.includes(k) || k.length > ATTACHMENTS.maxLength)) {
    return `附件类别不能是 ${ATTACHMENTS.reserved.join('、')},每项不超过 ${ATTACHMENTS.maxLength} 字;`
      + `不接受附件时只填 ${ATTACHMENTS.none}`;
  }
  if (new Set(labels).size !== labels.length) return '附件类别有重复';
  if (labels.length > ATTACHMENTS.maxKinds) return `最多 ${ATTACHMENTS.maxKinds} 个附件类别`;
  return null;
}

function batchApprovalEntry() {
  return entry('xf-batch-approval', 'checkbox', (element, injector) => ({
    label: label('batchApproval'),
    description: '勾选后办理人可在待办中勾选多件本步骤的任务,填写一次意见一并通过',
    getValue: () => getSpiffProperty(element, 'batchApproval') === 'true',
    setValue: (checked) => setSpiffProperty(injector, element, 'batchApproval', checked ? 'true' : ''),
  }));
}

function opinionRequiredEntry() {
  return entry('xf-opinion-required', 'checkbox', (element, injector) => ({
    label: label('opinionRequired'),
    description: '勾选后本步骤的每个操作(包括通过)都必须填写审批意见;不勾选时仅不通过、退回须填写',
    getValue: () => getSpiffProperty(element, 'opinionRequired') === 'true',
    setValue: (checked) => setSpiffProperty(injector, element, 'opinionRequired', checked ? 'true' : ''),
  }));
}

function actionEntry(action, word) {
  return entry(`xf-action-${action}`, 'checkbox', (element, injector) => ({
    label: `允许${word}(${action})`,
    getValue: () => getActions(element).includes(action),
    setValue: (checked) => setAction(injector, element, action, checked),
  }));
}

function laneRoleEntry(config) {
  return entry('xf-lane-role', 'select', (element, injector) => ({
    label: '角色(谁办理此泳道的任务)',
    description: '泳道名称将写为 “中文名 (角色代码)”',
    getValue: () => roleOfLane(getBusinessObject(element).name),
    setValue: (value) => setLaneRole(injector, element, value, config.roles),
    getOptions: () => [UNSET, ...config.roles.map((r) => ({ value: r.code, label: `${r.name} (${r.code})` }))],
  }));
}

function decisionEntry(config) {
  return entry('xf-decision', 'select', (element, injector) => ({
    label: '决策表(DMN)',
    getValue: () => getCalledDecision(element) || '',
    setValue: (value) => setCalledDecision(injector, element, value),
    getOptions: () => [UNSET,
      ...config.decisions().map((d) => ({ value: d.id, label: `${d.name || d.id} (${d.id})` }))],
  }));
}

function timerDaysEntries() {
  return [
    entry('xf-timer-days', 'text', (element, injector) => ({
      label: '期限(天)',
      description: '按天数设置定时器;也可在“定时器”组直接写表达式',
      validate: (v) => (!v || /^\d+$/.test(v) ? null : '请输入天数'),
      getValue: () => getTimerDays(element).days,
      setValue: (value) => setTimerDays(injector, element, value, getTimerDays(element).kind || 'natural'),
    })),
    entry('xf-timer-kind', 'select', (element, injector) => ({
      label: '计日方式',
      getValue: () => getTimerDays(element).kind,
      setValue: (value) => setTimerDays(injector, element, getTimerDays(element).days, value),
      getOptions: () => [{ value: '', label: '(自定义表达式)' }, { value: 'natural', label: '自然日' },
        { value: 'working', label: '工作日(法定节假日除外)' }],
    })),
  ];
}

function conditionEntry() {
  return entry('xf-condition', 'text', (element, injector) => ({
    label: '条件表达式',
    description: '如 review_result == "同意";可用表单字段、决策表输出、settings["键"]',
    getValue: () => {
      const cond = getBusinessObject(element).get('conditionExpression');
      return cond ? cond.body : '';
    },
    setValue: (value) => setCondition(injector, element, (value || '').trim()),
  }));
}

function scriptEntry() {
  return entry('xf-script', 'textarea', (element, injector) => ({
    label: '脚本(每行 “变量 = 表达式”)', rows: 4,
    getValue: () => getBusinessObject(element).get('script') || '',
    setValue: (value) => injector.get('modeling').updateProperties(element, { scriptFormat: 'python', script: value || '' }),
  }));
}

// 办理时限 as a number, a unit and the procedure's day kind; a value the widget cannot show (P1M, an
// expression) is shown in words and kept until a number is typed
function dueInEntries(config) {
  const current = (element) => parseDuration(getSpiffProperty(element, 'dueIn'));
  return [
    entry('xf-due-amount', 'text', (element, injector) => ({
      label: label('dueIn'),
      description: current(element) ? '不填为不限时' : `当前为${durationWords(getSpiffProperty(element, 'dueIn'))},填数字即改写`,
      validate: (v) => (!v || /^\d+$/.test(v.trim()) ? null : '请填写整数'),
      getValue: () => String((current(element) || {}).amount ?? ''),
      setValue: (value) => {
        const unit = (current(element) || {}).unit || 'D';
        const text = (value || '').trim();
        if (text && !/^\d+$/.test(text)) return;
        setSpiffProperty(injector, element, 'dueIn', formatDuration(text, unit));
      },
    })),
    entry('xf-due-unit', 'select', (element, injector) => ({
      label: '时限单位',
      getValue: () => (current(element) || {}).unit || 'D',
      setValue: (unit) => {
        const amount = (current(element) || {}).amount;
        if (amount) setSpiffProperty(injector, element, 'dueIn', formatDuration(amount, unit));
      },
      getOptions: () => UNITS.map(([value, word]) => ({ value, label: word })),
    })),
    entry('xf-day-kind', 'select', (element, injector) => ({
      label: label('dayKind'),
      description: '不选时按“流程设置”中的计日方式;工作日不含周末和法定节假日',
      getValue: () => getSpiffProperty(element, 'dayKind') || '',
      setValue: (value) => setSpiffProperty(injector, element, 'dayKind', value),
      getOptions: () => [{ value: '', label: `(按流程设置:${(DAY_KINDS.find(([k]) => k === config.dayKind()) || [])[1] || '自然日'})` },
        ...DAY_KINDS.map(([value, word]) => ({ value, label: word }))],
    })),
  ];
}

export default function XiangflowPropertiesProvider(propertiesPanel, config) {
  this._config = config;
  propertiesPanel.registerProvider(400, this);
}
XiangflowPropertiesProvider.$inject = ['propertiesPanel', 'config.xiangflow'];

XiangflowPropertiesProvider.prototype.getGroups = function(element) {
  const config = this._config;
  return (groups) => {
    const entries = [];
    if (is(element, 'bpmn:Lane')) entries.push(laneRoleEntry(config));
    if (is(element, 'bpmn:UserTask')) {
      entries.push(spiffSelect('xf-form-key', 'formKey', label('formKey'), () => config.forms().map((k) => ({ value: k, label: k })),
        '在“表单”页新建和编辑表单'));
      ACTIONS.forEach(([action, word]) => entries.push(actionEntry(action, word)));
      entries.push(...dueInEntries(config));
      entries.push(opinionRequiredEntry());
      entries.push(batchApprovalEntry());
      entries.push(spiffText('xf-attachments', 'attachments', label('attachments'),
        '逗号分隔的附件类别,如 房屋照片,鉴定报告(上传时供选择);填 none 表示本步骤不接受附件;不填为一般附件',
        attachmentsProblem));
      entries.push(spiffSelect('xf-notice-kind', 'noticeKind', label('noticeKind', ',签发即完成本步骤'), () => config.noticeKinds().map((k) => ({ value: k.code, label: `${k.name} (${k.code})` })),
        '选择后本步骤只能在“公示公告”页面签发该公文来完成,其后的公示期自签发起算;公文模板见 notices/notices.json'));
    }
    if (is(element, 'bpmn:BusinessRuleTask')) entries.push(decisionEntry(config));
    if (is(element, 'bpmn:ScriptTask')) entries.push(scriptEntry());
    const bo = getBusinessObject(element);
    if (is(element, 'bpmn:Event') && (bo.get('eventDefinitions') || []).some((d) => is(d, 'bpmn:TimerEventDefinition'))) {
      entries.push(...timerDaysEntries());
    }
    if (is(element, 'bpmn:SequenceFlow') && bo.sourceRef && is(bo.sourceRef, 'bpmn:Gateway')
        && !is(bo.sourceRef, 'bpmn:ParallelGateway')) {
      entries.push(conditionEntry());
    }
    if (is(element, 'bpmn:FlowNode')) {
      entries.push(spiffSelect('xf-case-status', 'caseStatus', label('caseStatus', ',本步骤完成后'),
        () => config.caseStatuses.map(([s, word]) => ({ value: s, label: `${word} (${s})` }))));
      entries.push(spiffSelect('xf-starts-procedure', 'startsProcedure', label('startsProcedure', ',本步骤完成后'),
        () => config.procedures.map((p) => ({ value: p, label: p }))));
      if (getSpiffProperty(element, 'startsProcedure')) {
        entries.push(spiffText('xf-pass-data', 'passData', label('passData', ',逗号分隔')));
      }
    }
    if (entries.length) {
      groups.splice(1, 0, { id: 'xiangflow', label: '乡流设置', entries, shouldOpen: true });
    }
    return groups;
  };
};

export const XiangflowPropertiesProviderModule = {
  __init__: ['xiangflowPropertiesProvider'],
  xiangflowPropertiesProvider: ['type', XiangflowPropertiesProvider],
};
