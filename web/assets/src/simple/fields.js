// Form fields across the simple model's blocks, by key.
import { inputComponents, labelOf } from '../form-builder';
import { walk } from './model';

export function allFieldsWithLabels(model) {
  const out = {};
  walk(model.blocks, (b) => { if (b.form) inputComponents(b.form).forEach((c) => { out[c.key] = labelOf(c); }); return true; });
  return out;
}

// keys used by every form except one (the builder keeps keys unique in the procedure)
export function keysOutside(model, form) {
  const keys = new Set();
  walk(model.blocks, (b) => { if (b.form && b.form !== form) inputComponents(b.form).forEach((c) => keys.add(c.key)); return true; });
  return keys;
}
