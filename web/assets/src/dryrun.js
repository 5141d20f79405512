// 试运行 without JSON: the sample is generated from the forms of the draft's user tasks (one group of fields per
// step, in flow order, editable) and sent as the server's {"data": {}, "steps": {"<step id>": {...}}}; the
// result is told in words: step names, the role's Chinese name, the fields' labels and values.
import { field, h } from './dom';
import { inputComponents, labelOf } from './form-builder';

const BPMN = 'http://www.omg.org/spec/BPMN/20100524/MODEL';

function spiffProperty(node, name) {
  for (const p of node.getElementsByTagNameNS('*', 'property')) {
    if (p.getAttribute('name') === name) return p.getAttribute('value');
  }
  return undefined;
}

// the diagram's element names by id, its user tasks in flow order and each lane's role
export function readDiagram(xml, laneRole) {
  const doc = new DOMParser().parseFromString(xml || '', 'application/xml');
  const names = {};
  for (const node of doc.getElementsByTagNameNS(BPMN, '*')) {
    const id = node.getAttribute('id');
    if (id && node.getAttribute('name')) names[id] = node.getAttribute('name');
  }
  const laneOf = {};
  for (const lane of doc.getElementsByTagNameNS(BPMN, 'lane')) {
    for (const ref of lane.getElementsByTagNameNS(BPMN, 'flowNodeRef')) laneOf[ref.textContent.trim()] = laneRole(lane.getAttribute('name'));
  }
  const next = {};
  for (const flow of doc.getElementsByTagNameNS(BPMN, 'sequenceFlow')) {
    (next[flow.getAttribute('sourceRef')] = next[flow.getAttribute('sourceRef')] || []).push(flow.getAttribute('targetRef'));
  }
  const order = [];
  const seen = new Set();
  const queue = [...doc.getElementsByTagNameNS(BPMN, 'startEvent')].map((n) => n.getAttribute('id'));
  while (queue.length) {
    const id = queue.shift();
    if (seen.has(id)) continue;
    seen.add(id);
    order.push(id);
    queue.push(...(next[id] || []));
  }
  const tasks = [...doc.getElementsByTagNameNS(BPMN, 'userTask')].map((n) => ({
    id: n.getAttribute('id'), name: n.getAttribute('name') || '(未命名步骤)', formKey: spiffProperty(n, 'formKey'),
    role: laneOf[n.getAttribute('id')] || '',
  }));
  const rank = (t) => (order.includes(t.id) ? order.indexOf(t.id) : order.length);
  tasks.sort((a, b) => rank(a) - rank(b));
  return { names, tasks };
}

// an 18-digit resident ID with a correct check digit (for a cn_id field's sample)
function sampleId() {
  const body = '51092119800101001';
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...body].reduce((s, d, i) => s + Number(d) * weights[i], 0);
  return body + '10X98765432'[sum % 11];
}

export function sampleValue(comp, today) {
  const v = comp.validate || {};
  switch (comp.type) {
    case 'number': {
      let n = v.min !== undefined ? v.min : 1;
      if (v.max !== undefined && n > v.max) n = v.max;
      return n;
    }
    case 'datetime': return today;
    case 'checkbox': return true;
    case 'select': case 'radio': return ((comp.values || [])[0] || {}).value ?? '';
    case 'checklist': return (comp.values || []).slice(0, 1).map((o) => o.value);
    case 'textarea': return '试运行填写的内容';
    default: return (comp.properties || {}).format === 'cn_id' ? sampleId() : '试运行';
  }
}

function control(comp, value, onInput) {
  const common = { 'data-sample-key': comp.key };
  if (comp.type === 'checkbox') {
    return h('input', { ...common, type: 'checkbox', checked: value, onchange: (e) => onInput(e.target.checked) });
  }
  if (comp.type === 'select' || comp.type === 'radio') {
    return h('select', { ...common, onchange: (e) => onInput(e.target.value) },
      (comp.values || []).map((o) => h('option', { value: o.value, selected: o.value === value }, o.label || o.value)));
  }
  if (comp.type === 'checklist') {
    return h('select', { ...common, multiple: true, onchange: (e) => onInput([...e.target.selectedOptions].map((o) => o.value)) },
      (comp.values || []).map((o) => h('option', { value: o.value, selected: (value || []).includes(o.value) }, o.label || o.value)));
  }
  const type = comp.type === 'number' ? 'number' : comp.type === 'datetime' ? 'date' : 'text';
  return h('input', {
    ...common, type, value: value ?? '', step: type === 'number' ? 'any' : undefined,
    oninput: (e) => onInput(type === 'number' ? (e.target.value === '' ? '' : Number(e.target.value)) : e.target.value),
  });
}

export class DryRunSample {
  constructor(container) {
    this.container = container;
    this.values = {}; // step id → {key: value}; kept across re-renders so edits survive a form change
    this.tasks = [];
    this.forms = {};
  }

  // tasks: readDiagram(...).tasks; forms: formKey → schema
  render(tasks, forms, today) {
    this.tasks = tasks;
    this.forms = forms;
    const groups = [];
    for (const task of tasks) {
      const schema = task.formKey && forms[task.formKey];
      const comps = schema ? inputComponents(schema) : [];
      const values = this.values[task.id] = this.values[task.id] || {};
      const fields = comps.map((comp) => {
        if (!(comp.key in values)) values[comp.key] = sampleValue(comp, today);
        return field(labelOf(comp), control(comp, values[comp.key], (v) => { values[comp.key] = v; }));
      });
      groups.push(h('fieldset', { class: 'xf-sample-step', dataset: { step: task.id } },
        h('legend', {}, task.name), fields.length ? fields : h('p', { class: 'muted' }, '此步骤没有表单字段,直接通过')));
    }
    if (!groups.length) groups.push(h('p', { class: 'muted' }, '流程中还没有办理步骤'));
    this.container.replaceChildren(...groups);
  }

  // the sample as the server reads it: every step's values under its id
  sample() {
    const steps = {};
    for (const task of this.tasks) if (this.values[task.id]) steps[task.id] = { ...this.values[task.id] };
    return { data: {}, steps };
  }
}

function chineseDate(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(iso || '');
  return m ? `${Number(m[1])}年${Number(m[2])}月${Number(m[3])}日` : iso;
}

// the server's text with element ids replaced by their names and ISO datetimes by dates
export function inWords(text, names) {
  let out = String(text || '').replace(/\d{4}-\d{2}-\d{2}T[\d:.]+(?:[+-]\d{2}:\d{2}|Z)?/g, (m) => chineseDate(m));
  for (const [id, name] of Object.entries(names).sort((a, b) => b[0].length - a[0].length)) {
    if (id.length >= 3) out = out.split(id).join(`「${name}」`);
  }
  return out;
}

// one step of the result in words
export function stepWords(step, schema, sent, roleName) {
  if (step.kind === 'user_task') {
    const comps = schema ? inputComponents(schema) : [];
    const filled = comps.filter((c) => sent && sent[c.key] !== undefined && sent[c.key] !== '')
      .map((c) => `${labelOf(c)}:${Array.isArray(sent[c.key]) ? sent[c.key].join('、') : sent[c.key] === true ? '是' : sent[c.key]}`);
    return `${step.name}:${roleName || '办理人'}通过${filled.length ? `(${filled.join(',')})` : ''}`;
  }
  if (step.kind === 'timer') return `${step.name}:${inWords(step.detail, {})}`;
  return `${step.name}${step.detail ? `:${step.detail}` : ''}`;
}
