// The simple designer's flow: blocks top to bottom, a + between them to insert a block, branches side by side.
import { h } from '../dom';
import { childLists, KIND_NAMES, KINDS, newBlock } from './model';
import { conditionWords } from './words';

export class FlowView {
  // ctx: {vocab, model(), selected(), problems(), select(id), changed(), words}
  constructor(container, ctx) {
    this.container = container;
    this.ctx = ctx;
    this.menu = null;
    document.addEventListener('click', (event) => {
      if (this.menu && !this.menu.contains(event.target) && !event.target.closest('.sd-plus')) this.closeMenu();
    });
  }

  render() {
    const model = this.ctx.model();
    this.closeMenu();
    this.container.replaceChildren(h('div', { class: 'sd-list sd-top' }, this.list(model.blocks, true)));
  }

  list(blocks, top) {
    const out = [];
    if (!top) out.push(this.plus(blocks, 0, true));
    blocks.forEach((block, i) => {
      out.push(this.block(block));
      const last = i === blocks.length - 1;
      if (block.kind === 'end') return;
      if (top && last) return;
      out.push(this.plus(blocks, i + 1, !top && last));
    });
    return out;
  }

  plus(list, index, atEnd) {
    const button = h('button', {
      type: 'button', class: 'sd-plus', title: '在此处添加步骤', 'aria-label': '添加步骤', 'data-testid': 'add-block',
      onclick: (event) => { event.stopPropagation(); this.openMenu(button, list, index, atEnd); },
    }, '+');
    return h('div', { class: 'sd-gap' }, h('span', { class: 'sd-line' }), button);
  }

  openMenu(anchor, list, index, atEnd) {
    this.closeMenu();
    const kinds = KINDS.filter(([kind]) => kind !== 'end' || atEnd);
    this.menu = h('div', { class: 'sd-menu', role: 'menu', 'data-testid': 'block-menu' }, kinds.map(([kind, word]) => h('button', {
      type: 'button', role: 'menuitem', dataset: { kind },
      onclick: () => {
        const before = list.slice(0, index).reverse().find((b) => b.role);
        const block = newBlock(kind, this.ctx.vocab, before ? before.role : this.ctx.roleBefore(list));
        list.splice(index, 0, block);
        this.closeMenu();
        this.ctx.changed();
        this.ctx.select(block.id);
      },
    }, word)));
    anchor.parentElement.append(this.menu);
  }

  closeMenu() {
    if (this.menu) this.menu.remove();
    this.menu = null;
  }

  block(block) {
    const problems = this.ctx.problems(block.id);
    const card = h('div', {
      class: `sd-block sd-${block.kind}${this.ctx.selected() === block.id ? ' selected' : ''}${problems.length ? ' has-problem' : ''}${this.ctx.onPath(block.id) ? ' on-path' : ''}`,
      dataset: { block: block.id, kind: block.kind }, 'data-testid': 'block', tabindex: 0, role: 'button',
      onclick: (event) => { event.stopPropagation(); this.ctx.select(block.id); },
      onkeydown: (event) => { if (event.key === 'Enter') this.ctx.select(block.id); },
    },
    h('div', { class: 'sd-kind' }, KIND_NAMES[block.kind] || block.kind),
    h('div', { class: 'sd-name' }, block.name),
    h('div', { class: 'sd-summary' }, this.ctx.words.summary(block)),
    problems.length ? h('div', { class: 'sd-problem' }, problems.join(';')) : null);
    const lists = childLists(block);
    if (!lists.length) return card;
    const model = this.ctx.model();
    const columns = lists.map((branch, i) => {
      const isOtherwise = block.kind === 'condition' && branch === block.otherwise;
      const head = block.kind === 'condition'
        ? (isOtherwise ? '否则(以上条件都不满足)' : conditionWords(branch, this.ctx.vocab, model))
        : `同时办理`;
      return h('div', { class: 'sd-branch', dataset: { branch: branch.id } },
        h('div', { class: 'sd-branch-head', onclick: () => this.ctx.select(block.id) },
          h('strong', {}, branch.name || `分支${i + 1}`), h('span', { class: 'muted' }, head)),
        h('div', { class: 'sd-list' }, this.list(branch.blocks, false)));
    });
    return h('div', { class: 'sd-group', dataset: { group: block.id } }, card,
      h('div', { class: 'sd-branches' }, columns),
      h('div', { class: 'sd-join' }, block.kind === 'condition' ? '汇合' : '全部完成后继续'));
  }
}
