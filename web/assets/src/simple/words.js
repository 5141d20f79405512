// The simple model in words: a block's summary on its card, a branch's conditions ("家庭人口 ≥ 5 且 …").
import { allFieldsWithLabels } from './fields';

const byCode = (list, code, key = 'code') => (list || []).find((x) => x[key] === code);

export function durationText(d, vocab) {
  if (!d || !d.amount) return '不限时';
  const unit = byCode(vocab.units, d.unit);
  return `${d.amount} 个${unit ? unit.name : d.unit}`;
}

export function roleText(code, vocab) {
  const role = byCode(vocab.roles, code);
  return role ? role.name : (code ? code : '(未选角色)');
}

const OP_SIGNS = { '==': '等于', '!=': '不等于', '>': '>', '>=': '≥', '<': '<', '<=': '≤', contains: '包含' };

export function opText(op, vocab) {
  const found = byCode(vocab.condition_ops, op, 'op');
  return OP_SIGNS[op] || (found ? found.name : op);
}

function valueText(value) {
  if (value === true) return '是';
  if (value === false) return '否';
  return value === '' || value === undefined || value === null ? '(未填)' : String(value);
}

export function conditionWords(branch, vocab, model) {
  const labels = allFieldsWithLabels(model);
  const join = branch.join === 'or' ? ' 或 ' : ' 且 ';
  const parts = (branch.conditions || []).map((c) => `${labels[c.field] || '(未选字段)'} ${opText(c.op, vocab)} ${valueText(c.value)}`);
  return parts.join(join) || '(未设条件)';
}

export function summary(block, vocab) {
  switch (block.kind) {
    case 'start': return `${roleText(block.role, vocab)}发起 · 表单 ${((block.form || {}).components || []).length} 项`;
    case 'approval': {
      const sign = byCode(vocab.sign_modes, (block.sign || {}).mode);
      const ratio = (block.sign || {}).mode === 'ratio' ? ` ${block.sign.percent}%` : '';
      return `${roleText(block.role, vocab)} · ${sign ? sign.name : '一人审批'}${ratio} · ${durationText(block.time_limit, vocab)}`;
    }
    case 'cc': return `抄送给${roleText(block.role, vocab)}`;
    case 'notice': {
      const kind = byCode(vocab.notice_kinds, block.notice_kind);
      return `${roleText(block.role, vocab)}出具${kind ? kind.name : '(未选公文)'} · 公示 ${durationText(block.period, vocab)}`;
    }
    case 'wait': return `等待 ${durationText(block.duration, vocab)}`;
    case 'subprocess': {
      const proc = byCode(vocab.procedures, block.procedure);
      return `发起「${proc ? proc.name : '(未选流程)'}」`;
    }
    case 'end': {
      const status = byCode(vocab.case_statuses, block.status);
      return `案件状态:${status ? status.name : block.status}`;
    }
    case 'condition': return `${block.branches.length} 个条件 + 否则`;
    case 'parallel': return `${block.branches.length} 个分支同时办理`;
    default: return '';
  }
}
