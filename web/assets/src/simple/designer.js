// 简易模式: the simple designer (docs/simple-designer.md). The draft stays BPMN on the server; this page reads
// it as the simple model (GET …/simple), edits the model and saves it (PUT …/simple: the server compiles it,
// saves the draft and answers with its problems). Nothing here decides what is valid: the server does.
import { field, h, select } from '../dom';
import { api } from '../studio-api';
import { FlowView } from './flow';
import { childLists, walk } from './model';
import { BlockPanel } from './panel';
import { summary } from './words';

// JSON with sorted keys: two models compare equal whatever the order of their keys
function canonical(value) {
  return JSON.stringify(value, (_key, v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v));
}

export class SimpleDesigner {
  // hooks: {lockVersion(), setLockVersion(v), changed(), message(text, kind)}
  constructor(root, config, hooks) {
    this.root = root;
    this.config = config;
    this.hooks = hooks;
    this.urls = {
      vocabulary: (config.urls && config.urls.simpleVocabulary) || '/studio/api/simple/vocabulary',
      model: (config.urls && config.urls.simple) || `/studio/api/drafts/${config.draftId}/simple`,
    };
    this.vocab = null;
    this.model = null;
    this.selected = null;
    this.problems = [];
    this.path = new Set(); // the last dry run's path (block ids)
    this.edits = 0; // changes made on this page (a save adopts the server's model only if none came meanwhile)
    const ctx = {
      onPath: (id) => this.path.has(id),
      roleBefore: (list) => this.roleBefore(list),
      vocab: null,
      model: () => this.model,
      selected: () => this.selected,
      problems: (id) => this.problems.filter((p) => p.block_id === id).map((p) => p.message),
      select: (id) => this.select(id),
      changed: (rerenderPanel) => this.changed(rerenderPanel),
      words: { summary: (b) => summary(b, this.vocab) },
    };
    this.ctx = ctx;
    this.flow = new FlowView(root.querySelector('[data-testid="simple-flow"]'), ctx);
    this.panel = new BlockPanel(root.querySelector('[data-testid="simple-panel"]'), ctx);
    this.settingsBox = root.querySelector('[data-testid="simple-settings"]');
  }

  // {simple: true} when the draft opens in simple mode, else {simple: false, reason}
  async open() {
    if (!this.vocab) {
      this.vocab = await api(this.urls.vocabulary);
      this.ctx.vocab = this.vocab;
    }
    const data = await api(this.urls.model);
    if (!data.simple) return { simple: false, reason: data.reason };
    this.hooks.setLockVersion(data.lock_version);
    this.setModel(data.model);
    return { simple: true };
  }

  setModel(model) {
    this.model = model;
    this.render();
  }

  render() {
    this.flow.render();
    this.panel.show(this.selected);
    this.renderSettings();
  }

  select(id) {
    this.selected = id;
    this.flow.render();
    this.panel.show(id);
    if (window.innerWidth < 700) this.panel.container.scrollIntoView({ block: 'start' }); // below the flow on a phone
  }

  // the role of the last block with one before a branch's (empty) list: where a new block in it starts from
  roleBefore(list) {
    let role = '';
    walk(this.model.blocks, (b) => {
      if (childLists(b).some((branch) => branch.blocks === list)) return false;
      if (b.role) role = b.role;
      return true;
    });
    return role;
  }

  // mark the blocks a dry run went through
  markPath(ids) {
    this.path = new Set(ids);
    this.flow.render();
  }

  changed(rerenderPanel) {
    this.edits += 1;
    this.path = new Set();
    this.flow.render();
    if (rerenderPanel) this.panel.show(this.selected);
    this.hooks.changed();
  }

  // PUT the model; the server answers with the normalised model and the checks' problems. The page's own model
  // stays the one being edited: the server's replaces it only when it differs and nothing changed meanwhile
  // (the panel's fields hold the blocks they edit, so replacing it under someone typing would lose the typing).
  async save() {
    const sentAt = this.edits;
    const sent = canonical(this.model);
    const data = await api(this.urls.model, { model: this.model, lock_version: this.hooks.lockVersion() }, 'PUT');
    this.hooks.setLockVersion(data.lock_version);
    this.problems = data.problems || [];
    if (this.edits === sentAt && canonical(data.model) !== sent) {
      this.model = data.model;
      this.render();
    } else {
      this.flow.render();
    }
    return data;
  }

  renderSettings() {
    const box = this.settingsBox;
    const meta = this.model.meta;
    meta.settings = meta.settings || {};
    const changed = () => { this.edits += 1; this.hooks.changed(); };
    const out = [
      field('流程名称', h('input', { type: 'text', value: meta.name || '', 'data-testid': 'meta-name', oninput: (e) => { meta.name = e.target.value; changed(); } })),
      field('办理对象', select({ 'data-testid': 'meta-subject', onchange: (e) => { meta.subject_kind = e.target.value; changed(); } },
        (this.vocab.subject_kinds || []).map((k) => [k.code, k.name]), meta.subject_kind)),
      field('说明(依据的文件)', h('textarea', { rows: 3, value: meta.description || '', 'data-testid': 'meta-description',
        oninput: (e) => { meta.description = e.target.value; changed(); } })),
    ];
    for (const f of this.vocab.settings_fields || []) {
      const current = f.key in meta.settings ? meta.settings[f.key] : f.default;
      let control;
      const options = f.values || f.options;
      if (Array.isArray(options)) {
        control = select({ onchange: (e) => { meta.settings[f.key] = e.target.value; changed(); } },
          options.map((o) => (Array.isArray(o) ? o : [o.value ?? o.code, o.label ?? o.name])), current);
      } else if (f.type === 'checkbox' || f.type === 'boolean' || typeof f.default === 'boolean') {
        control = h('input', { type: 'checkbox', checked: Boolean(current), onchange: (e) => { meta.settings[f.key] = e.target.checked; changed(); } });
      } else {
        const number = f.type === 'number' || f.type === 'integer' || typeof f.default === 'number';
        control = h('input', { type: number ? 'number' : f.type === 'phone' ? 'tel' : 'text', value: current ?? '',
          oninput: (e) => { meta.settings[f.key] = number ? (e.target.value === '' ? null : Number(e.target.value)) : e.target.value; changed(); } });
      }
      control.dataset.setting = f.key;
      out.push(field(f.label, control));
    }
    box.replaceChildren(...out);
  }
}
