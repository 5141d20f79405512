// Guarding work in the studio: a change marks the draft dirty; a dirty draft is saved every AUTOSAVE_MS
// (自动保存), saved before an in-page link is followed (asking if saving fails), and leaving the page
// (closing the tab, reloading, typing an address) asks first (beforeunload).
import { errorText } from './studio-api';

const AUTOSAVE_MS = 30_000;

export class WorkGuard {
  constructor({ save, onStatus }) {
    this.save = save;
    this.onStatus = onStatus || (() => {});
    this.dirty = false;
    this.saving = null;
    window.addEventListener('beforeunload', (event) => {
      if (!this.dirty) return undefined;
      event.preventDefault();
      event.returnValue = '';
      return '';
    });
    document.addEventListener('click', (event) => this.onLink(event), true);
    this.timer = window.setInterval(() => { if (this.dirty) this.autosave(); }, AUTOSAVE_MS);
  }

  changed() {
    if (!this.dirty) this.onStatus('有未保存的修改');
    this.dirty = true;
  }

  saved() {
    this.dirty = false;
  }

  async autosave() {
    if (this.saving) return this.saving;
    this.saving = this.save({ quiet: true })
      .then(() => { this.onStatus(`已自动保存 ${new Date().toTimeString().slice(0, 5)}`); })
      .catch((err) => { this.onStatus(`自动保存失败:${errorText(err)}`); throw err; })
      .finally(() => { this.saving = null; });
    return this.saving;
  }

  async onLink(event) {
    const link = event.target.closest && event.target.closest('a[href]');
    if (!link || !this.dirty || link.target === '_blank' || link.hasAttribute('download')) return;
    const href = link.getAttribute('href');
    if (!href || href.startsWith('#') || link.dataset.tab) return;
    event.preventDefault();
    event.stopPropagation();
    try {
      await this.autosave();
    } catch (err) {
      // eslint-disable-next-line no-alert
      if (!window.confirm(`草稿未能保存(${errorText(err)})。仍要离开吗?未保存的修改会丢失。`)) return;
    }
    this.dirty = false;
    window.location.assign(link.href);
  }
}
