// The simple designer's side panel: the selected block's settings as fields (roles in Chinese, 会签/或签/比例,
// time limits as number + 自然日/工作日, actions, opinion, signature, attachments, the block's form).
import { field, h, select } from '../dom';
import { FormBuilder } from '../form-builder';
import { branchEditor, newBranch } from './conditions';
import { keysOutside } from './fields';
import { blocksBefore, childLists, fieldsBefore, findBlock, KIND_NAMES } from './model';

const pairs = (list, key = 'code', label = 'name') => (list || []).map((x) => [x[key], x[label]]);

const LEVEL_ORDER = ['village', 'township', 'county'];

// roles from the village up, as a case goes
function roleOptions(vocab) {
  const rank = (r) => (LEVEL_ORDER.includes(r.level) ? LEVEL_ORDER.indexOf(r.level) : LEVEL_ORDER.length);
  return [...(vocab.roles || [])].sort((a, b) => rank(a) - rank(b))
    .map((r) => [r.code, r.level_name ? `${r.name}(${r.level_name})` : r.name]);
}

// {amount, unit} or null; nullable: an empty number means 不限
export function durationWidget(value, vocab, nullable, onChange, testid) {
  const current = value || { amount: '', unit: (vocab.units[0] || {}).code };
  const amount = h('input', { type: 'number', min: 1, max: 365, step: 1, value: current.amount ?? '', 'aria-label': '天数',
    'data-testid': `${testid}-amount`, placeholder: nullable ? '不限' : '',
    oninput: () => emit() });
  const unit = select({ 'aria-label': '计日方式', 'data-testid': `${testid}-unit`, onchange: () => emit() }, pairs(vocab.units), current.unit);
  function emit() {
    const n = parseInt(amount.value, 10);
    onChange(n > 0 ? { amount: n, unit: unit.value } : (nullable ? null : { amount: '', unit: unit.value }));
  }
  return h('div', { class: 'sd-duration' }, amount, unit);
}

export class BlockPanel {
  // ctx: {vocab, model(), changed(rerenderPanel), select(id)}
  constructor(container, ctx) {
    this.container = container;
    this.ctx = ctx;
    this.id = null;
  }

  show(id) {
    this.id = id;
    this.render();
  }

  render() {
    const model = this.ctx.model();
    const found = this.id && findBlock(model, this.id);
    if (!found) {
      this.container.replaceChildren(h('p', { class: 'muted' }, '点击左侧的步骤进行设置;点 + 在两个步骤之间添加步骤'));
      return;
    }
    const { block, list } = found;
    const vocab = this.ctx.vocab;
    const changed = () => this.ctx.changed(false);
    const text = (label, prop, testid) => field(label, h('input', { type: 'text', value: block[prop] ?? '', 'data-testid': testid,
      oninput: (e) => { block[prop] = e.target.value; changed(); } }));
    const choose = (label, prop, options, testid, parse = (v) => v) => field(label, select({ 'data-testid': testid,
      onchange: (e) => { block[prop] = parse(e.target.value); changed(); } }, options, block[prop] ?? ''));
    const check = (label, prop, testid) => h('label', { class: 'fb-check' }, h('input', { type: 'checkbox', checked: block[prop], 'data-testid': testid,
      onchange: (e) => { block[prop] = e.target.checked; changed(); } }), ` ${label}`);
    const out = [h('h2', {}, `${KIND_NAMES[block.kind]}:${block.name}`)];
    out.push(text('步骤名称', 'name', 'block-name'));
    if (['start', 'approval', 'cc', 'notice'].includes(block.kind)) {
      const word = { start: '由谁发起', approval: '由谁审批', cc: '抄送给', notice: '由谁出具公示' }[block.kind];
      out.push(choose(word, 'role', roleOptions(vocab), 'block-role'));
    }
    if (block.kind === 'approval') out.push(...this.approvalFields(block, changed, choose, check));
    if (block.kind === 'notice') {
      out.push(field('公示公文', select({ 'data-testid': 'block-notice-kind', onchange: (e) => {
        block.notice_kind = e.target.value;
        const issuers = ((vocab.notice_kinds || []).find((k) => k.code === block.notice_kind) || {}).issuer_roles || [];
        if (issuers.length && !issuers.includes(block.role)) block.role = issuers[0]; // who may issue this notice
        this.ctx.changed(true);
      } }, pairs(vocab.notice_kinds), block.notice_kind)));
      out.push(field('公示期', durationWidget(block.period, vocab, false, (d) => { block.period = d; changed(); }, 'block-period')));
      const earlier = blocksBefore(model, block.id).filter((b) => b.kind === 'approval');
      out.push(choose('公示期内有异议时退回到', 'objection_return_to', [['', '(不退回)'], ...earlier.map((b) => [b.id, b.name])],
        'block-objection', (v) => v || null));
    }
    if (block.kind === 'wait') out.push(field('等待时长', durationWidget(block.duration, vocab, false, (d) => { block.duration = d; changed(); }, 'block-wait')));
    if (block.kind === 'subprocess') {
      out.push(choose('发起的流程', 'procedure', pairs(vocab.procedures), 'block-procedure'));
      const fields = fieldsBefore(model, block.id);
      out.push(h('fieldset', { class: 'sd-fieldset' }, h('legend', {}, '传给新案件的数据'), fields.length ? fields.map((f) => h('label', { class: 'fb-check' },
        h('input', { type: 'checkbox', checked: (block.pass_data || []).includes(f.key),
          onchange: (e) => { block.pass_data = e.target.checked ? [...new Set([...(block.pass_data || []), f.key])] : block.pass_data.filter((k) => k !== f.key); changed(); } }),
        ` ${f.label}`)) : h('span', { class: 'muted' }, '(前面没有表单字段)')));
    }
    if (block.kind === 'end') out.push(choose('结束时的案件状态', 'status', pairs(vocab.case_statuses), 'block-status'));
    if (block.kind === 'condition' || block.kind === 'parallel') out.push(...this.branchFields(block, model));
    if (block.form) out.push(this.formFields(block, model));
    if (block.kind !== 'start' && !(block.kind === 'end' && list === model.blocks)) {
      out.push(h('button', { type: 'button', class: 'secondary danger', 'data-testid': 'block-delete', onclick: () => {
        list.splice(list.indexOf(block), 1);
        this.id = null;
        this.ctx.changed(true);
      } }, childLists(block).length ? '删除此分支块(连同其中的步骤)' : '删除此步骤'));
    }
    this.container.replaceChildren(...out);
  }

  approvalFields(block, changed, choose, check) {
    const vocab = this.ctx.vocab;
    const model = this.ctx.model();
    const out = [];
    const texts = fieldsBefore(model, block.id).filter((f) => f.type === 'textfield');
    out.push(choose('指定人员(可选)', 'assignee_field', [['', '(不指定:该角色的人都可办理)'], ...texts.map((f) => [f.key, `由「${f.label}」填写的用户名`])],
      'block-assignee', (v) => v || null));
    const sign = block.sign || { mode: 'single' };
    const percent = h('input', { type: 'number', min: 1, max: 100, value: sign.percent ?? 60, 'aria-label': '通过比例(%)', 'data-testid': 'block-percent',
      hidden: sign.mode !== 'ratio', oninput: (e) => { block.sign = { mode: 'ratio', percent: parseInt(e.target.value, 10) || 0 }; changed(); } });
    out.push(field('审批方式', h('div', { class: 'sd-inline' }, select({ 'data-testid': 'block-sign', onchange: (e) => {
      block.sign = e.target.value === 'ratio' ? { mode: 'ratio', percent: parseInt(percent.value, 10) || 60 } : { mode: e.target.value };
      percent.hidden = e.target.value !== 'ratio';
      changed();
    } }, pairs(vocab.sign_modes), sign.mode), percent)));
    out.push(field('办理时限', durationWidget(block.time_limit, vocab, true, (d) => { block.time_limit = d; changed(); }, 'block-limit'),
      '不填为不限时;工作日不含周末和法定节假日'));
    out.push(h('fieldset', { class: 'sd-fieldset' }, h('legend', {}, '允许的操作'), (vocab.actions || []).map((a) => h('label', { class: 'fb-check' },
      h('input', { type: 'checkbox', checked: block.actions.includes(a.code), disabled: a.code === 'approve', dataset: { action: a.code },
        onchange: (e) => {
          const on = new Set(block.actions);
          if (e.target.checked) on.add(a.code); else on.delete(a.code);
          block.actions = vocab.actions.map((x) => x.code).filter((c) => on.has(c));
          changed();
        } }), ` ${a.name}`))));
    out.push(check('每个操作都必须填写意见', 'opinion_required', 'block-opinion'));
    out.push(check('允许批量审批', 'batch_approval', 'block-batch'));
    out.push(choose('农户签字', 'signature', [['', '不需要'], ['required', '必须签字'], ['optional', '可以签字']], 'block-signature', (v) => v || null));
    const mode = block.attachments === null || block.attachments === undefined ? 'general' : block.attachments.length ? 'kinds' : 'none';
    const kinds = h('input', { type: 'text', value: (block.attachments || []).join(','), placeholder: '如 房屋照片,鉴定报告', hidden: mode !== 'kinds',
      'aria-label': '附件类别', oninput: (e) => { block.attachments = e.target.value.replace(/，/g, ',').split(',').map((k) => k.trim()).filter(Boolean); changed(); } });
    out.push(field('附件', h('div', {}, select({ 'data-testid': 'block-attachments', onchange: (e) => {
      block.attachments = e.target.value === 'general' ? null : e.target.value === 'none' ? [] : (kinds.value ? block.attachments : ['附件']);
      kinds.hidden = e.target.value !== 'kinds';
      if (!kinds.hidden && !kinds.value) kinds.value = '附件';
      changed();
    } }, [['general', '可上传一般附件'], ['none', '不接受附件'], ['kinds', '按类别上传']], mode), kinds)));
    return out;
  }

  branchFields(block, model) {
    const vocab = this.ctx.vocab;
    const out = [];
    const redraw = () => this.ctx.changed(true);
    const changed = () => this.ctx.changed(false);
    const fields = fieldsBefore(model, block.id);
    block.branches.forEach((branch, i) => {
      const box = h('div', { class: 'sd-branch-edit' });
      if (block.kind === 'condition') box.append(branchEditor(branch, fields, vocab, changed));
      else box.append(field('分支名称', h('input', { type: 'text', value: branch.name, oninput: (e) => { branch.name = e.target.value; changed(); } })));
      const min = block.kind === 'condition' ? 1 : 2;
      if (block.branches.length > min) {
        box.append(h('button', { type: 'button', class: 'link danger', onclick: () => { block.branches.splice(i, 1); redraw(); } }, '删除此分支'));
      }
      out.push(box);
    });
    if (block.branches.length < 8) {
      out.push(h('button', { type: 'button', class: 'secondary small', 'data-testid': 'add-branch',
        onclick: () => { block.branches.push(newBranch(block.kind, block.branches.length + 1)); redraw(); } }, '+ 添加分支'));
    }
    if (block.kind === 'condition') {
      out.push(field('否则分支名称', h('input', { type: 'text', value: block.otherwise.name, oninput: (e) => { block.otherwise.name = e.target.value; changed(); } }),
        '以上条件都不满足时走否则分支'));
    }
    return out;
  }

  formFields(block, model) {
    const box = h('div', { class: 'sd-form fb xf-form', 'data-testid': 'block-form' });
    const builder = new FormBuilder(box, {
      onChange: () => this.ctx.changed(false, true), usedKeys: () => keysOutside(model, block.form),
      strict: true, reserved: this.ctx.vocab.reserved_keys,
    });
    builder.load(block.form);
    return h('details', { class: 'sd-form-box', open: true }, h('summary', {}, '本步骤的表单'), box);
  }
}
