// 表单编辑 (Chinese field-list builder). It reads and writes the same form-js JSON the server renders
// (web/templates/_form.html) and checks (engine/procedures/forms.py), and offers only what those support:
// the input types of forms.INPUT_TYPES plus 说明文字, and the validations required, min/max, maxLength and the
// resident-ID check (properties.format = cn_id). A component's other properties (notBefore, subject, ids,
// defaultValue …) are kept as they are. Keys are generated (field_1, field_2 …) and editable.
import { field, h } from './dom';

export const FIELD_TYPES = [
  ['textfield', '单行文字'], ['textarea', '多行文字'], ['number', '数字'], ['datetime', '日期'],
  ['select', '下拉选择'], ['radio', '单选'], ['checklist', '多选'], ['checkbox', '勾选项'], ['text', '说明文字'],
];
const TYPE_LABEL = Object.fromEntries(FIELD_TYPES);
const WITH_OPTIONS = new Set(['select', 'radio', 'checklist']);
const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SIMPLE_KEY = /^[a-z][a-z0-9_]{0,39}$/; // the simple designer's keys (docs/simple-designer.md, Forms)
const STATIC = new Set(['text', 'spacer', 'separator', 'html']);

export const isInput = (c) => !STATIC.has(c.type) && c.type !== 'group';
export const labelOf = (c) => c.label || c.dateLabel || c.key || '';

// the data-carrying components of a schema, groups flattened (as forms.input_components)
export function inputComponents(schema) {
  const found = [];
  const walk = (list) => (list || []).forEach((c) => {
    if ((c.type === 'group' || c.type === 'dynamiclist') && Array.isArray(c.components)) walk(c.components);
    else if (isInput(c)) found.push(c);
  });
  walk(schema && schema.components);
  return found;
}

function nextKey(used) {
  let n = 1;
  while (used.has(`field_${n}`)) n += 1;
  return `field_${n}`;
}

function randomId(prefix) {
  return `${prefix}_${Math.random().toString(36).slice(2, 9)}`;
}

// a new component of a type, its key not among used
export function newComponent(type, label, used) {
  if (type === 'text') return { type: 'text', id: randomId('Text'), text: label || '说明文字' };
  const key = nextKey(used);
  const comp = { type, id: randomId('Field'), key, label: label || TYPE_LABEL[type], validate: { required: false } };
  if (type === 'datetime') { comp.subtype = 'date'; comp.dateLabel = comp.label; }
  if (WITH_OPTIONS.has(type)) comp.values = [{ label: '选项一', value: '选项一' }, { label: '选项二', value: '选项二' }];
  return comp;
}

function optionsText(comp) {
  return (comp.values || []).map((v) => v.label || v.value).join('\n');
}

function optionsFrom(text, previous) {
  const known = new Map((previous || []).map((v) => [v.label || v.value, v.value]));
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return [...new Set(lines)].map((label) => ({ label, value: known.has(label) ? known.get(label) : label }));
}

function numberOrUndefined(text) {
  const t = String(text).trim();
  if (t === '') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : NaN;
}

export class FormBuilder {
  // usedKeys(): keys taken by the procedure's other forms (the simple designer: one key, one value per case);
  // strict: keys as the simple designer accepts them, reserved: keys the engine keeps for itself
  constructor(container, { onChange, usedKeys, strict, reserved } = {}) {
    this.container = container;
    this.onChange = onChange || (() => {});
    this.usedKeys = usedKeys || (() => new Set());
    this.strict = Boolean(strict);
    this.reserved = new Set(reserved || []);
    this.schema = null;
  }

  load(schema) {
    this.schema = schema;
    this.render();
  }

  getSchema() {
    return this.schema;
  }

  keys(except) {
    return new Set([...this.usedKeys(), ...inputComponents(this.schema).filter((c) => c !== except).map((c) => c.key)]);
  }

  add(type, label) {
    const comp = newComponent(type, label, this.keys());
    this.schema.components.push(comp);
    this.changed(true);
    return comp;
  }

  // problems the server would refuse, in words (shown under the list; the server's check decides)
  problems() {
    const found = [];
    const seen = this.usedKeys();
    for (const c of inputComponents(this.schema)) {
      const name = labelOf(c) || '(未命名字段)';
      if (this.strict && !SIMPLE_KEY.test(c.key || '')) found.push(`「${name}」的字段代码只能用小写英文字母、数字和下划线,以字母开头`);
      else if (!KEY.test(c.key || '')) found.push(`「${name}」的字段代码只能用英文字母、数字和下划线,且不以数字开头`);
      else if (this.reserved.has(c.key) || c.key.startsWith('subject_')) found.push(`字段代码 ${c.key} 由系统使用,请换一个`);
      else if (seen.has(c.key)) found.push(`字段代码 ${c.key} 重复`);
      seen.add(c.key);
      if (!labelOf(c)) found.push(`字段 ${c.key} 没有标题`);
      if (WITH_OPTIONS.has(c.type) && !(c.values || []).length) found.push(`「${name}」至少要有一个选项`);
      const v = c.validate || {};
      if ([v.min, v.max, v.maxLength].some((x) => Number.isNaN(x))) found.push(`「${name}」的数值限制必须是数字`);
    }
    return found;
  }

  changed(rerender) {
    if (rerender) this.render();
    else this.renderProblems();
    this.onChange(this.schema);
  }

  move(comp, delta) {
    const list = this.schema.components;
    const i = list.indexOf(comp);
    const j = i + delta;
    if (i < 0 || j < 0 || j >= list.length) return;
    [list[i], list[j]] = [list[j], list[i]];
    this.changed(true);
  }

  remove(comp) {
    this.schema.components = this.schema.components.filter((c) => c !== comp);
    this.changed(true);
  }

  renderProblems() {
    const box = this.container.querySelector('[data-testid="form-problems"]');
    if (!box) return;
    box.replaceChildren(...this.problems().map((p) => h('li', {}, p)));
  }

  render() {
    const c = this.container;
    c.replaceChildren();
    if (!this.schema) {
      c.append(h('p', { class: 'muted' }, '请选择或新建表单'));
      return;
    }
    const list = h('ol', { class: 'fb-list', 'data-testid': 'form-fields' });
    this.schema.components.forEach((comp, i) => list.append(this.card(comp, i)));
    if (!this.schema.components.length) list.append(h('li', { class: 'muted fb-empty' }, '表单还没有字段:用下面的按钮添加'));
    const adders = h('div', { class: 'fb-add', 'data-testid': 'form-add' }, h('span', { class: 'muted' }, '添加字段:'),
      FIELD_TYPES.map(([type, word]) => h('button', {
        type: 'button', class: 'secondary small', dataset: { fieldType: type },
        onclick: () => {
          const comp = this.add(type);
          const input = this.container.querySelector(`[data-component="${comp.id}"] [data-prop="label"]`);
          if (input) { input.focus(); input.select(); }
        },
      }, `+ ${word}`)));
    c.append(list, adders, h('ul', { class: 'fb-problems', 'data-testid': 'form-problems' }));
    this.renderProblems();
  }

  card(comp, index) {
    const li = h('li', { class: 'fb-card', dataset: { component: comp.id || '', key: comp.key || '' } });
    const head = h('div', { class: 'fb-head' },
      h('strong', {}, `${index + 1}. ${TYPE_LABEL[comp.type] || '其他组件'}`),
      h('span', { class: 'fb-tools' },
        h('button', { type: 'button', class: 'link', title: '上移', 'aria-label': '上移', onclick: () => this.move(comp, -1) }, '↑'),
        h('button', { type: 'button', class: 'link', title: '下移', 'aria-label': '下移', onclick: () => this.move(comp, 1) }, '↓'),
        h('button', { type: 'button', class: 'link danger', onclick: () => this.remove(comp) }, '删除')));
    li.append(head);
    if (comp.type === 'text') {
      li.append(field('说明内容', h('textarea', {
        rows: 2, 'data-prop': 'text', value: comp.text || '',
        oninput: (e) => { comp.text = e.target.value; this.changed(false); },
      })));
      return li;
    }
    if (!isInput(comp)) {
      li.append(h('p', { class: 'muted' }, '此组件由高级编辑写入,这里不修改它'));
      return li;
    }
    const row = h('div', { class: 'fb-row' });
    row.append(field('标题', h('input', {
      type: 'text', 'data-prop': 'label', value: labelOf(comp),
      oninput: (e) => {
        comp.label = e.target.value;
        if (comp.type === 'datetime') comp.dateLabel = e.target.value;
        this.changed(false);
      },
    })));
    row.append(field('字段代码', h('input', {
      type: 'text', 'data-prop': 'key', value: comp.key || '', spellcheck: 'false',
      oninput: (e) => { comp.key = e.target.value.trim(); li.dataset.key = comp.key; this.changed(false); },
    }), '条件和样例数据用它指这个字段'));
    li.append(row);
    const opts = h('div', { class: 'fb-row' });
    const validate = () => { comp.validate = comp.validate || {}; return comp.validate; };
    opts.append(h('label', { class: 'fb-check' }, h('input', {
      type: 'checkbox', 'data-prop': 'required', checked: (comp.validate || {}).required,
      onchange: (e) => { validate().required = e.target.checked; this.changed(false); },
    }), comp.type === 'checkbox' ? ' 必须勾选' : ' 必填'));
    const numberInput = (prop, text) => field(text, h('input', {
      type: 'number', step: 'any', 'data-prop': prop, value: (comp.validate || {})[prop] ?? '',
      oninput: (e) => {
        const v = numberOrUndefined(e.target.value);
        if (v === undefined) delete validate()[prop]; else validate()[prop] = v;
        this.changed(false);
      },
    }));
    if (comp.type === 'number') opts.append(numberInput('min', '最小值'), numberInput('max', '最大值'));
    if (comp.type === 'textfield' || comp.type === 'textarea') opts.append(numberInput('maxLength', '最多字数'));
    if (comp.type === 'textfield') {
      opts.append(h('label', { class: 'fb-check' }, h('input', {
        type: 'checkbox', 'data-prop': 'cn_id', checked: (comp.properties || {}).format === 'cn_id',
        onchange: (e) => {
          comp.properties = { ...(comp.properties || {}) };
          if (e.target.checked) comp.properties.format = 'cn_id'; else delete comp.properties.format;
          if (!Object.keys(comp.properties).length) delete comp.properties;
          this.changed(false);
        },
      }), ' 身份证号码(校验位)'));
    }
    li.append(opts);
    if (WITH_OPTIONS.has(comp.type)) {
      li.append(field('选项(每行一个)', h('textarea', {
        rows: 3, 'data-prop': 'options', value: optionsText(comp),
        oninput: (e) => { comp.values = optionsFrom(e.target.value, comp.values); this.changed(false); },
      })));
    }
    if (comp.type !== 'text' && !TYPE_LABEL[comp.type]) li.append(h('p', { class: 'muted' }, '服务器不支持此组件类型'));
    return li;
  }
}

