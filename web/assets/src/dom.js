// Tiny DOM helpers for the studio's own editors (no framework): h('div', {class: 'x', onclick}, ...children).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'value') el.value = value;
    else if (name === 'checked') el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// a <select> from [value, label] pairs
export function select(attrs, options, current) {
  return h('select', attrs, options.map(([value, label]) => h('option', { value, selected: String(value) === String(current ?? '') }, label)));
}

// a labelled field: <div class="field"><label for=id>text</label>control</div>
let counter = 0;
export function field(text, control, hint) {
  if (!control.id) { counter += 1; control.id = `xf-f-${counter}`; }
  return h('div', { class: 'field' }, h('label', { class: 'field-label', for: control.id }, text), control,
    hint ? h('div', { class: 'muted field-hint' }, hint) : null);
}
