// The simple designer's model (docs/simple-designer.md §1): new blocks with their defaults, and walking the
// tree of block lists (top level, condition branches, 否则, parallel branches).
import { inputComponents, labelOf } from '../form-builder';

export const KINDS = [
  ['approval', '审批'], ['condition', '条件分支'], ['parallel', '并行分支'], ['cc', '抄送'],
  ['notice', '公示'], ['wait', '定时/等待'], ['subprocess', '子流程'], ['end', '结束'],
];
export const KIND_NAMES = { start: '发起', ...Object.fromEntries(KINDS) };

export const newId = () => `b_${Math.random().toString(36).slice(2, 10).padEnd(8, '0')}`;

// roleHint: the role of the step before (a new step is most often the same office's or the next one's)
export function newBlock(kind, vocab, roleHint) {
  const staff = vocab.roles.find((r) => r.code !== 'applicant') || vocab.roles[0] || {};
  const role = roleHint || staff.code || '';
  const base = { id: newId(), kind, name: KIND_NAMES[kind] };
  switch (kind) {
    case 'approval':
      return { ...base, name: '审批', role, assignee_field: null, sign: { mode: 'single' }, time_limit: null,
        actions: ['approve', 'reject', 'return'], opinion_required: false, signature: null, attachments: null,
        batch_approval: false, form: { components: [] } };
    case 'condition':
      return { ...base, branches: [{ id: newId(), name: '条件1', join: 'and', conditions: [{ field: '', op: '==', value: '' }], blocks: [] }],
        otherwise: { id: newId(), name: '否则', blocks: [] } };
    case 'parallel':
      return { ...base, branches: [{ id: newId(), name: '分支1', blocks: [] }, { id: newId(), name: '分支2', blocks: [] }] };
    case 'cc': return { ...base, name: '抄送', role };
    case 'notice': {
      const notice = (vocab.notice_kinds || [])[0] || {};
      const issuers = notice.issuer_roles || [];
      return { ...base, role: issuers.includes(role) || !issuers.length ? role : issuers[0], notice_kind: notice.code || '',
        period: { amount: 7, unit: 'natural' }, objection_return_to: null };
    }
    case 'wait': return { ...base, name: '等待', duration: { amount: 1, unit: 'natural' } };
    case 'subprocess': return { ...base, procedure: ((vocab.procedures || [])[0] || {}).code || '', pass_data: [] };
    case 'end': return { ...base, name: '结束', status: 'approved' };
    default: throw new Error(kind);
  }
}

// the block lists inside a block (branches in order, then 否则)
export function childLists(block) {
  if (block.kind === 'condition') return [...block.branches, block.otherwise].filter(Boolean);
  if (block.kind === 'parallel') return block.branches;
  return [];
}

// every block in flow order (pre-order), with the list that holds it
export function walk(blocks, visit, list = blocks) {
  for (const block of blocks) {
    if (visit(block, list) === false) return false;
    for (const branch of childLists(block)) if (walk(branch.blocks, visit, branch.blocks) === false) return false;
  }
  return true;
}

export function findBlock(model, id) {
  let found = null;
  walk(model.blocks, (b, list) => { if (b.id === id) { found = { block: b, list }; return false; } return true; });
  return found;
}

// the blocks before one in flow order (what a condition or an assignee field may read)
export function blocksBefore(model, id) {
  const before = [];
  walk(model.blocks, (b) => { if (b.id === id) return false; before.push(b); return true; });
  return before;
}

// form fields filled before a block: [{key, label, type, comp, block}]
export function fieldsBefore(model, id) {
  return blocksBefore(model, id).filter((b) => b.form).flatMap((b) => inputComponents(b.form)
    .map((c) => ({ key: c.key, label: labelOf(c), type: c.type, comp: c, block: b })));
}
