// 流程设置 → 流程参数 as fields: procedure.json's settings (read in expressions as settings["键"]) as rows of
// 参数代码 + 值 (a number stays a number); day_kind has its own select and is not listed here.
import { h } from './dom';

const CODE = /^[A-Za-z_][A-Za-z0-9_]*$/;

function valueText(value) {
  if (typeof value === 'string' || typeof value === 'number') return String(value);
  if (typeof value === 'boolean') return value ? '是' : '否';
  return null; // a list or an object: kept as it is, not editable here
}

function parsed(text, previous) {
  const t = text.trim();
  if (typeof previous === 'boolean') return t === '是' || t === 'true';
  if (t !== '' && /^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  return text;
}

export class SettingsFields {
  constructor(container, { onChange } = {}) {
    this.container = container;
    this.onChange = onChange || (() => {});
    this.rows = [];
  }

  load(settings) {
    this.rows = Object.entries(settings || {}).filter(([k]) => k !== 'day_kind').map(([code, value]) => ({ code, value }));
    this.render();
  }

  // the settings object, or throws with a Chinese message
  value() {
    const out = {};
    for (const row of this.rows) {
      const code = row.code.trim();
      if (!code && (row.value === '' || row.value === undefined)) continue;
      if (!CODE.test(code)) throw new Error(`流程参数代码「${code || '(空)'}」只能用英文字母、数字和下划线,且不以数字开头`);
      if (code === 'day_kind') throw new Error('计日方式请在上面的“办理时限计日方式”中选择');
      if (code in out) throw new Error(`流程参数 ${code} 重复`);
      out[code] = row.value;
    }
    return out;
  }

  add(code = '', value = '') {
    this.rows.push({ code, value });
    this.render();
    this.onChange();
  }

  render() {
    const table = h('table', { class: 'xf-settings-table', 'data-testid': 'settings-rows' },
      h('thead', {}, h('tr', {}, h('th', {}, '参数代码'), h('th', {}, '值'), h('th', {}, ''))));
    const body = h('tbody');
    this.rows.forEach((row, i) => {
      const text = valueText(row.value);
      body.append(h('tr', { dataset: { setting: row.code } },
        h('td', {}, h('input', {
          type: 'text', value: row.code, 'aria-label': `第 ${i + 1} 个参数的代码`, spellcheck: 'false',
          oninput: (e) => { row.code = e.target.value; this.onChange(); },
        })),
        h('td', {}, text === null ? h('span', { class: 'muted' }, '(列表或对象,请在高级模式导出后修改)') : h('input', {
          type: 'text', value: text, 'aria-label': `参数 ${row.code} 的值`,
          oninput: (e) => { row.value = parsed(e.target.value, row.value); this.onChange(); },
        })),
        h('td', {}, h('button', {
          type: 'button', class: 'link danger',
          onclick: () => { this.rows.splice(i, 1); this.render(); this.onChange(); },
        }, '删除'))));
    });
    if (!this.rows.length) body.append(h('tr', {}, h('td', { colspan: 3, class: 'muted' }, '(没有流程参数)')));
    table.append(body);
    this.container.replaceChildren(table, h('button', {
      type: 'button', class: 'secondary small', 'data-testid': 'settings-add', onclick: () => this.add(),
    }, '+ 添加参数'));
  }
}
