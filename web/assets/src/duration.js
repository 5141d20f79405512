// 办理时限 without ISO: the step property dueIn is an ISO 8601 duration (engine/procedures/checks/steps.py);
// people see and type a number and a unit. Whether days are natural or working days is the step's dayKind,
// else the procedure's settings.day_kind (engine/runtime/projections.py); working days apply to whole days only.
export const UNITS = [['D', '天'], ['H', '小时']];
export const DAY_KINDS = [['natural', '自然日'], ['working', '工作日']];

// "P5D" → {amount: 5, unit: 'D'}; '' → {amount: '', unit: 'D'}; anything else → null (kept as it is)
export function parseDuration(iso) {
  const text = (iso || '').trim();
  if (!text) return { amount: '', unit: 'D' };
  let m = /^P(\d+)([DW])$/.exec(text);
  if (m) return { amount: Number(m[1]) * (m[2] === 'W' ? 7 : 1), unit: 'D' };
  m = /^PT(\d+)H$/.exec(text);
  if (m) return { amount: Number(m[1]), unit: 'H' };
  return null;
}

export function formatDuration(amount, unit) {
  const n = parseInt(amount, 10);
  if (!(n > 0)) return '';
  return unit === 'H' ? `PT${n}H` : `P${n}D`;
}

// in words: "5 个工作日", "48 小时"
export function durationWords(iso, dayKind) {
  const d = parseDuration(iso);
  if (!d || d.amount === '') return iso ? '自定义时限' : '不限';
  if (d.unit === 'H') return `${d.amount} 小时`;
  return `${d.amount} 个${dayKind === 'working' ? '工作日' : '自然日'}`;
}
