// 条件分支's expression builder: per branch, rows of 字段 ▾ 比较 ▾ 值 joined by 且/或; the fields are the form
// fields filled before the condition block, the operators the server's (vocabulary.condition_ops by field type).
import { field, h, select } from '../dom';
import { newId } from './model';

function opsFor(type, vocab) {
  return (vocab.condition_ops || []).filter((o) => !o.types || o.types.includes(type));
}

function valueControl(cond, fieldInfo, onChange) {
  const type = fieldInfo ? fieldInfo.type : 'textfield';
  const set = (v) => { cond.value = v; onChange(); };
  const attrs = { 'aria-label': '值', 'data-cond': 'value' };
  if (type === 'number') {
    return h('input', { ...attrs, type: 'number', step: 'any', value: cond.value ?? '',
      oninput: (e) => set(e.target.value === '' ? '' : Number(e.target.value)) });
  }
  if (type === 'checkbox') {
    if (typeof cond.value !== 'boolean') cond.value = true;
    return select({ ...attrs, onchange: (e) => set(e.target.value === 'true') }, [['true', '是(已勾选)'], ['false', '否']], String(cond.value));
  }
  if (['select', 'radio', 'checklist'].includes(type)) {
    const options = (fieldInfo.comp.values || []).map((o) => [o.value, o.label || o.value]);
    if (!options.some(([v]) => v === cond.value) && options.length) cond.value = options[0][0];
    return select({ ...attrs, onchange: (e) => set(e.target.value) }, options, cond.value);
  }
  return h('input', { ...attrs, type: 'text', value: cond.value ?? '', oninput: (e) => set(e.target.value) });
}

// one branch's editor; fields: fieldsBefore(model, block.id); onChange(rerender)
export function branchEditor(branch, fields, vocab, onChange) {
  const box = h('div', { class: 'sd-cond-branch', dataset: { branch: branch.id } });
  const redraw = () => { box.replaceWith(branchEditor(branch, fields, vocab, onChange)); onChange(); };
  box.append(field('分支名称', h('input', { type: 'text', value: branch.name, 'data-cond': 'branch-name',
    oninput: (e) => { branch.name = e.target.value; onChange(); } })));
  if (!fields.length) box.append(h('p', { class: 'muted' }, '前面的步骤还没有表单字段:先在发起或审批步骤的表单中添加字段'));
  branch.conditions.forEach((cond, i) => {
    const info = fields.find((f) => f.key === cond.field);
    const ops = opsFor(info ? info.type : 'textfield', vocab);
    if (!ops.some((o) => o.op === cond.op) && ops.length) cond.op = ops[0].op;
    const row = h('div', { class: 'sd-cond-row', dataset: { condition: String(i) } },
      i ? select({ 'aria-label': '且/或', 'data-cond': 'join', onchange: (e) => { branch.join = e.target.value; redraw(); } },
        [['and', '且'], ['or', '或']], branch.join) : h('span', { class: 'sd-cond-if' }, '当'),
      select({ 'aria-label': '字段', 'data-cond': 'field', onchange: (e) => { cond.field = e.target.value; cond.value = ''; redraw(); } },
        [['', '(选择字段)'], ...fields.map((f) => [f.key, f.label])], cond.field),
      select({ 'aria-label': '比较', 'data-cond': 'op', onchange: (e) => { cond.op = e.target.value; onChange(); } },
        ops.map((o) => [o.op, o.name]), cond.op),
      valueControl(cond, info, onChange),
      branch.conditions.length > 1 ? h('button', { type: 'button', class: 'link danger', onclick: () => { branch.conditions.splice(i, 1); redraw(); } }, '删除') : null);
    box.append(row);
  });
  box.append(h('button', { type: 'button', class: 'secondary small', 'data-testid': 'add-condition',
    onclick: () => { branch.conditions.push({ field: '', op: '==', value: '' }); redraw(); } }, '+ 添加条件'));
  return box;
}

export function newBranch(kind, n) {
  return kind === 'condition'
    ? { id: newId(), name: `条件${n}`, join: 'and', conditions: [{ field: '', op: '==', value: '' }], blocks: [] }
    : { id: newId(), name: `分支${n}`, blocks: [] };
}
