// 流程设计 (procedure studio), BPMN 高级模式: bpmn-js Modeler in Chinese with the XiangFlow properties panel and
// bpmnlint, the Chinese form builder (form-builder.js) for forms, dmn-js for decision tables. The draft lives on the server
// (/studio/api/drafts/<id>): this page loads its files, edits them and saves them back; the server
// validates (problems per element id, marked here on the diagram), dry-runs and deploys.
// window.xiangflowStudio exposes the same functions the buttons use (for automation and tests).
import 'bpmn-js/dist/assets/diagram-js.css';
import 'bpmn-js/dist/assets/bpmn-js.css';
import 'bpmn-js/dist/assets/bpmn-font/css/bpmn-embedded.css';
import '@bpmn-io/properties-panel/dist/assets/properties-panel.css';
import 'bpmn-js-bpmnlint/dist/assets/css/bpmn-js-bpmnlint.css';
import 'dmn-js/dist/assets/diagram-js.css';
import 'dmn-js/dist/assets/dmn-js-shared.css';
import 'dmn-js/dist/assets/dmn-js-drd.css';
import 'dmn-js/dist/assets/dmn-js-decision-table.css';
import 'dmn-js/dist/assets/dmn-js-decision-table-controls.css';
import 'dmn-js/dist/assets/dmn-js-literal-expression.css';
import 'dmn-js/dist/assets/dmn-font/css/dmn-embedded.css';
import './studio.css';

import BpmnModeler from 'bpmn-js/lib/Modeler';
import lintModule from 'bpmn-js-bpmnlint';
import zn from 'bpmn-js-i18n/translations/zn';
import { BpmnPropertiesPanelModule, BpmnPropertiesProviderModule } from 'bpmn-js-properties-panel';
import DmnModeler from 'dmn-js/lib/Modeler';

import lintConfig from '../.bpmnlintrc';
import { DryRunSample, inWords, readDiagram, stepWords } from './dryrun';
import { FormBuilder } from './form-builder';
import { WorkGuard } from './guard';
import { SettingsFields } from './settings-fields';
import { SimpleDesigner } from './simple/designer';
import spiffModdle from './spiffworkflow-moddle.json';
import { api, errorText, message as showMessage } from './studio-api';
import * as props from './studio-properties';
import { EXTRA_ZH } from './studio-zh';

// ------------------------------------------------------------------ Chinese
function translate(template, replacements) {
  const values = replacements || {};
  const text = EXTRA_ZH[template] || zn[template] || template;
  return text.replace(/{([^}]+)}/g, (_, key) => (values[key] !== undefined ? values[key] : `{${key}}`));
}
const translateModule = { translate: ['value', translate] };

// ------------------------------------------------------------------ page state
const root = document.getElementById('studio');
const config = JSON.parse(document.getElementById(root.dataset.configSource).textContent);
props.useVocabulary(config); // the engine's step property names, actions and statuses
const state = { files: {}, lockVersion: null, bpmnKey: null, currentForm: null, currentDmn: null, problems: [], mode: 'bpmn' };
const $ = (sel) => root.querySelector(sel);
const message = (text, kind) => showMessage($('[data-testid="studio-message"]'), text, kind);

const formKeys = () => Object.keys(state.files).filter((k) => k.startsWith('form/')).map((k) => k.slice(5)).sort();
const dmnKeys = () => Object.keys(state.files).filter((k) => k.startsWith('dmn/')).sort();

function decisions() {
  const found = [];
  for (const key of dmnKeys()) {
    const doc = new DOMParser().parseFromString(state.files[key], 'application/xml');
    for (const node of doc.getElementsByTagNameNS('*', 'decision')) {
      found.push({ id: node.getAttribute('id'), name: node.getAttribute('name'), file: key });
    }
  }
  return found;
}

function noticeKinds() {
  try {
    return (JSON.parse(state.files['template/notices.json'] || '{}').kinds || []).filter((k) => k && k.code);
  } catch (err) {
    return [];
  }
}

// ------------------------------------------------------------------ editors
const modeler = new BpmnModeler({
  container: '#bpmn-canvas',
  propertiesPanel: { parent: '#bpmn-properties' },
  additionalModules: [BpmnPropertiesPanelModule, BpmnPropertiesProviderModule, props.XiangflowPropertiesProviderModule,
    lintModule, translateModule],
  moddleExtensions: { spiffworkflow: spiffModdle },
  linting: { bpmnlint: lintConfig, active: true },
  xiangflow: {
    roles: config.roles, caseStatuses: config.caseStatuses, procedures: config.procedures,
    forms: formKeys, decisions, noticeKinds,
    dayKind: () => (manifest().settings || {}).day_kind || 'natural',
  },
});
const guard = new WorkGuard({ save: (opts) => save(opts), onStatus: (text) => { $('[data-testid="save-status"]').textContent = text; } });
const formBuilder = new FormBuilder($('#form-editor'), { onChange: () => guard.changed() });
const settingsFields = new SettingsFields($('#set-settings-rows'), { onChange: () => guard.changed() });
const sampleFields = new DryRunSample($('#dryrun-sample'));
const dmnModeler = new DmnModeler({ container: '#dmn-editor', common: { translate } });
modeler.on('commandStack.changed', (event) => { if (event.trigger !== 'clear') guard.changed(); });
dmnModeler.on('views.changed', () => {
  const viewer = dmnModeler.getActiveViewer();
  if (viewer && !viewer.xfWatched) {
    viewer.xfWatched = true;
    viewer.on('elements.changed', () => guard.changed());
  }
});
$('#settings-form').addEventListener('input', () => guard.changed());
const simple = new SimpleDesigner(root, config, {
  lockVersion: () => state.lockVersion,
  setLockVersion: (v) => { state.lockVersion = v; },
  changed: () => guard.changed(),
});

// ------------------------------------------------------------------ tabs
// fit the diagram to the canvas once it has a size (a hidden canvas cannot be zoomed)
function fitDiagram() {
  const box = document.getElementById('bpmn-canvas');
  if (!state.fitPending || !box.offsetWidth || !box.offsetHeight) return;
  state.fitPending = false;
  const canvas = modeler.get('canvas');
  canvas.resized();
  if (modeler.get('elementRegistry').getAll().length > 1) canvas.zoom('fit-viewport', 'auto');
}

function showTab(name) {
  if (name === 'dryrun') renderSample();
  root.querySelectorAll('[data-tab]').forEach((a) => a.classList.toggle('active', a.dataset.tab === name));
  root.querySelectorAll('[data-pane]').forEach((pane) => { pane.hidden = pane.dataset.pane !== name; });
  if (name === 'bpmn') { modeler.get('canvas').resized(); fitDiagram(); }
  if (name === 'dmn') {
    const viewer = dmnModeler.getActiveViewer();
    if (viewer && viewer.get('canvas', false)) viewer.get('canvas').resized();
  }
}

root.querySelectorAll('[data-tab]').forEach((a) => a.addEventListener('click', async (event) => {
  event.preventDefault();
  if (state.mode === 'bpmn') await syncEditors();
  showTab(a.dataset.tab);
}));

// ------------------------------------------------------------------ forms
function renderList(listId, keys, current, open, label) {
  const list = $(`#${listId}`);
  list.replaceChildren();
  for (const key of keys) {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `link${key === current ? ' current' : ''}`;
    button.textContent = label(key);
    button.dataset.key = key;
    button.addEventListener('click', () => open(key));
    item.append(button);
    list.append(item);
  }
  if (!keys.length) {
    const item = document.createElement('li');
    item.className = 'muted';
    item.textContent = '(无)';
    list.append(item);
  }
}

function syncForm() {
  if (state.currentForm && formBuilder.getSchema()) {
    state.files[`form/${state.currentForm}`] = JSON.stringify(formBuilder.getSchema(), null, 2);
  }
}

async function openForm(key) {
  syncForm();
  formBuilder.load(JSON.parse(state.files[`form/${key}`]));
  state.currentForm = key;
  $('#form-current').textContent = `正在编辑表单 ${key}`;
  renderList('form-list', formKeys(), key, openForm, (k) => k);
  return formBuilder;
}

function nextFormCode() {
  let n = 1;
  while (state.files[`form/${config.code}/form_${n}`]) n += 1;
  return `form_${n}`;
}

async function addForm(name) {
  const short = (name || '').trim();
  if (!/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(short)) throw new Error('表单代码只能是字母、数字、下划线和连字符');
  const key = `${config.code}/${short}`;
  if (state.files[`form/${key}`]) throw new Error(`表单 ${key} 已存在`);
  state.files[`form/${key}`] = JSON.stringify({
    type: 'default', id: `Form_${short}`, components: [], schemaVersion: 16,
  }, null, 2);
  guard.changed();
  await openForm(key);
  return key;
}

$('#new-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const key = await addForm($('#new-form-name').value);
    $('#new-form-name').value = nextFormCode();
    message(`已新建表单 ${key}`);
  } catch (err) {
    message(errorText(err), 'error');
  }
});

// ------------------------------------------------------------------ DMN
async function syncDmn() {
  if (state.currentDmn) {
    const { xml } = await dmnModeler.saveXML({ format: true });
    state.files[state.currentDmn] = xml;
  }
}

async function openDmn(key) {
  await syncDmn();
  await dmnModeler.importXML(state.files[key]);
  state.currentDmn = key;
  const table = dmnModeler.getViews().find((v) => v.type === 'decisionTable');
  if (table) await dmnModeler.open(table);
  renderList('dmn-list', dmnKeys(), key, openDmn, (k) => k.slice(4));
  return dmnModeler;
}

function emptyDmn(id, name) {
  return `<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" xmlns:dmndi="https://www.omg.org/spec/DMN/20191111/DMNDI/" xmlns:dc="http://www.omg.org/spec/DMN/20180521/DC/" id="Definitions_${id}" name="${name}" namespace="http://xiangflow.cn/dmn">
  <decision id="${id}" name="${name}">
    <decisionTable id="DecisionTable_${id}" hitPolicy="FIRST">
      <input id="Input_${id}" label="输入"><inputExpression id="InputExpression_${id}" typeRef="string"><text>input_value</text></inputExpression></input>
      <output id="Output_${id}" label="结果" name="result" typeRef="string" />
    </decisionTable>
  </decision>
  <dmndi:DMNDI><dmndi:DMNDiagram id="DMNDiagram_${id}"><dmndi:DMNShape id="DMNShape_${id}" dmnElementRef="${id}"><dc:Bounds height="80" width="180" x="160" y="100" /></dmndi:DMNShape></dmndi:DMNDiagram></dmndi:DMNDI>
</definitions>
`;
}

async function addDmn(name) {
  const id = (name || '').trim();
  if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(id)) throw new Error('决策表代码只能是字母开头的字母、数字、下划线');
  const key = `dmn/${id}.dmn`;
  if (state.files[key]) throw new Error(`决策表 ${id} 已存在`);
  state.files[key] = emptyDmn(id, id);
  guard.changed();
  await openDmn(key);
  return key;
}

$('#new-dmn').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const key = await addDmn($('#new-dmn-name').value);
    $('#new-dmn-name').value = '';
    message(`已新建决策表 ${key.slice(4)}`);
  } catch (err) {
    message(errorText(err), 'error');
  }
});

// ------------------------------------------------------------------ settings (procedure.json)
function manifest() {
  return JSON.parse(state.files['procedure.json']);
}

function fillSettings() {
  const m = manifest();
  $('#set-name').value = m.name || '';
  $('#set-subject').value = m.subject_kind || 'household';
  $('#set-day-kind').value = (m.settings || {}).day_kind || 'natural';
  $('#set-description').value = m.description || '';
  settingsFields.load(m.settings || {});
}

function syncSettings() {
  const m = manifest();
  m.name = $('#set-name').value.trim();
  m.subject_kind = $('#set-subject').value;
  m.description = $('#set-description').value;
  m.settings = { ...settingsFields.value(), day_kind: $('#set-day-kind').value };
  state.files['procedure.json'] = JSON.stringify(m, null, 2);
}

// ------------------------------------------------------------------ server round trips
async function syncEditors() {
  const { xml } = await modeler.saveXML({ format: true });
  state.files[state.bpmnKey] = xml;
  syncForm();
  await syncDmn();
  syncSettings();
}

// one save at a time: an autosave and a click on 校验/发布 would otherwise send the same lock_version twice and
// the second would be refused as "saved by someone else" (409)
let saving = Promise.resolve();
function save(opts) {
  const run = saving.then(() => saveNow(opts), () => saveNow(opts));
  saving = run.catch(() => {});
  return run;
}

async function saveNow({ quiet } = {}) {
  if (state.mode === 'simple') return saveSimple({ quiet });
  await syncEditors();
  const data = await api(config.urls.draft, { files: state.files, lock_version: state.lockVersion });
  state.lockVersion = data.lock_version;
  state.files = data.files;
  guard.saved();
  $('[data-testid="draft-status"]').textContent = '编辑中';
  $('[data-testid="save-status"]').textContent = '已保存';
  if (!quiet) message('草稿已保存');
  return data;
}

// 简易模式: the model is compiled and saved by the server; its problems name the steps
async function saveSimple({ quiet } = {}) {
  const data = await simple.save();
  guard.saved();
  renderProblems(data.problems || []);
  $('[data-testid="draft-status"]').textContent = '编辑中';
  $('[data-testid="save-status"]').textContent = '已保存';
  if (!quiet) message('草稿已保存');
  return data;
}

// the compiled files of the draft (after a simple-mode save), into the BPMN-mode editors when asked
async function refreshFiles(importEditors) {
  const data = await api(config.urls.draft);
  state.files = data.files;
  state.lockVersion = data.lock_version;
  state.bpmnKey = Object.keys(state.files).find((k) => k.startsWith('bpmn/'));
  if (importEditors) await importEditorsFromFiles();
}

function clearProblemMarks() {
  const canvas = modeler.get('canvas');
  const registry = modeler.get('elementRegistry');
  modeler.get('overlays').remove({ type: 'xf-problem' });
  registry.getAll().forEach((el) => canvas.removeMarker(el, 'xf-problem'));
}

function renderProblems(problems) {
  state.problems = problems;
  clearProblemMarks();
  const list = $('#problems');
  list.replaceChildren();
  const registry = modeler.get('elementRegistry');
  const canvas = modeler.get('canvas');
  const overlays = modeler.get('overlays');
  const marked = new Set();
  for (const p of problems) {
    const item = document.createElement('li');
    item.dataset.testid = 'problem';
    item.setAttribute('data-testid', 'problem');
    if (p.element_id) item.dataset.elementId = p.element_id;
    item.textContent = p.element_name ? `${p.element_name}:${p.message}` : `${p.where}:${p.message}`;
    const element = p.element_id && registry.get(p.element_id);
    if (element) {
      item.classList.add('clickable');
      item.addEventListener('click', () => {
        showTab('bpmn');
        modeler.get('selection').select(element);
        canvas.scrollToElement(element);
      });
      if (!marked.has(p.element_id)) {
        canvas.addMarker(element, 'xf-problem');
        const badge = document.createElement('div');
        badge.className = 'xf-problem-badge';
        badge.title = p.message;
        badge.textContent = '!';
        badge.dataset.problemFor = p.element_id;
        overlays.add(element, 'xf-problem', { position: { top: -10, right: 10 }, html: badge });
        marked.add(p.element_id);
      }
    }
    list.append(item);
  }
  if (!problems.length) {
    const item = document.createElement('li');
    item.className = 'ok';
    item.setAttribute('data-testid', 'no-problems');
    item.textContent = '校验通过:可以发布';
    list.append(item);
  }
}

async function validate() {
  if (state.mode === 'simple') {
    const saved = await saveSimple({ quiet: true });
    const ok = saved.ok && !(saved.problems || []).length;
    message(ok ? '校验通过' : `校验发现 ${(saved.problems || []).length} 个问题,已在步骤上标出`, ok ? 'ok' : 'error');
    return { ok, problems: saved.problems || [] };
  }
  await save();
  const data = await api(config.urls.validate, {});
  renderProblems(data.problems);
  message(data.ok ? '校验通过' : `校验发现 ${data.problems.length} 个问题,已在图上标出`, data.ok ? 'ok' : 'error');
  return data;
}

async function deploy() {
  await save();
  try {
    const data = await api(config.urls.deploy, {});
    renderProblems([]);
    $('[data-testid="draft-status"]').textContent = `已发布 v${data.version}`;
    message(data.message);
    return data;
  } catch (err) {
    if (err.data && err.data.problems) {
      renderProblems(err.data.problems);
      message(`不能发布:${err.data.problems.length} 个问题,已在图上标出`, 'error');
      return { ok: false, problems: err.data.problems };
    }
    throw err;
  }
}

function clearPathMarks() {
  const canvas = modeler.get('canvas');
  modeler.get('elementRegistry').getAll().forEach((el) => canvas.removeMarker(el, 'xf-dry-path'));
}

function diagram() {
  return readDiagram(state.files[state.bpmnKey], props.roleOfLane);
}

function formsByKey() {
  const forms = {};
  for (const key of formKeys()) {
    try { forms[key] = JSON.parse(state.files[`form/${key}`]); } catch (err) { /* a broken form: no sample fields */ }
  }
  return forms;
}

async function renderSample() {
  if (state.mode === 'simple') await save({ quiet: true }).then(() => refreshFiles(false)).catch(() => {});
  else await syncEditors().catch(() => {});
  sampleFields.render(diagram().tasks, formsByKey(), new Date().toISOString().slice(0, 10));
}

const roleName = (code) => (config.roles.find((r) => r.code === code) || {}).name || code;

// sample: {"data": .., "steps": ..} (automation), else the fields of the 试运行 tab
async function dryRun(sample) {
  $('#dryrun-result').replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: '试运行中…' }));
  await save({ quiet: true });
  if (state.mode === 'simple') await refreshFiles(false);
  const { names, tasks } = diagram();
  const sent = sample !== undefined ? sample : sampleFields.sample();
  try {
    const data = await api(config.urls.dryRun, { sample: sent });
    clearPathMarks();
    const registry = modeler.get('elementRegistry');
    const canvas = modeler.get('canvas');
    if (state.mode === 'simple') simple.markPath(data.path);
    else data.path.forEach((id) => { if (registry.get(id)) canvas.addMarker(id, 'xf-dry-path'); });
    const box = $('#dryrun-result');
    box.replaceChildren();
    const head = document.createElement('p');
    head.setAttribute('data-testid', 'dryrun-outcome');
    const stopped = data.error_element && names[data.error_element] ? `(停在「${names[data.error_element]}」)` : '';
    head.textContent = data.completed ? `流程走完,案件状态:${props.CASE_STATUS_LABELS[data.status] || data.status}`
      : `未走完${stopped}:${inWords(data.error || '等待中', names)}`;
    box.append(head);
    const list = document.createElement('ol');
    list.setAttribute('data-testid', 'dryrun-steps');
    const forms = formsByKey();
    for (const step of data.steps) {
      const task = tasks.find((t) => t.id === step.element_id);
      const item = document.createElement('li');
      const values = { ...(sent.data || {}), ...((sent.steps || {})[step.element_id] || {}) };
      item.textContent = stepWords(step, task && forms[task.formKey], values, task && roleName(task.role));
      item.dataset.elementId = step.element_id;
      list.append(item);
    }
    box.append(list);
    const path = document.createElement('p');
    path.className = 'muted';
    path.setAttribute('data-testid', 'dryrun-path');
    path.textContent = `经过:${data.path.filter((id) => names[id]).map((id) => names[id]).join(' → ')}`;
    box.append(path);
    const marked = state.mode === 'bpmn' ? ',经过的步骤已在流程图上标出' : ',经过的步骤已在“流程”页标出';
    message(data.completed ? `试运行完成${marked}` : '试运行未走完', data.completed ? 'ok' : 'error');
    return data;
  } catch (err) {
    if (err.data && err.data.problems) renderProblems(err.data.problems);
    throw err;
  }
}

function guarded(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      if (err.data && err.data.problems) renderProblems(err.data.problems);
      message(errorText(err), 'error');
      return { ok: false, error: errorText(err) };
    }
  };
}

root.querySelector('[data-action="save"]').addEventListener('click', guarded(save));
root.querySelector('[data-action="validate"]').addEventListener('click', guarded(validate));
root.querySelector('[data-action="deploy"]').addEventListener('click', guarded(deploy));
$('#dryrun-form').addEventListener('submit', (event) => { event.preventDefault(); guarded(dryRun)(); });

// ------------------------------------------------------------------ load
async function importEditorsFromFiles() {
  state.currentForm = null;
  state.currentDmn = null;
  const { warnings } = await modeler.importXML(state.files[state.bpmnKey]);
  if (warnings && warnings.length) message(`流程图有 ${warnings.length} 条导入警告`, 'error');
  state.fitPending = true;
  fitDiagram();
  fillSettings();
  $('#new-form-name').value = nextFormCode();
  const forms = formKeys();
  renderList('form-list', forms, null, openForm, (k) => k);
  if (forms.length) await openForm(forms[0]);
  const dmns = dmnKeys();
  renderList('dmn-list', dmns, null, openDmn, (k) => k.slice(4));
  if (dmns.length) await openDmn(dmns[0]);
}

// ------------------------------------------------------------------ modes
function setMode(mode) {
  state.mode = mode;
  root.dataset.mode = mode;
  $('[data-mode-switch="simple"]').hidden = mode === 'simple';
  $('[data-mode-switch="bpmn"]').hidden = mode === 'bpmn';
  showTab(mode === 'simple' ? 'simple' : 'bpmn');
}

function showReason(reason) {
  const box = $('[data-testid="simple-reason"]');
  box.textContent = reason ? `不能用简易模式打开:${reason}。请在 BPMN 高级模式中修改。` : '';
  box.hidden = !reason;
}

async function toBpmn() {
  await save({ quiet: true });
  await refreshFiles(true);
  showReason('');
  setMode('bpmn');
  message('已切换到 BPMN 高级模式:这是简易模式生成的流程图,可以直接修改');
}

async function toSimple() {
  await save({ quiet: true });
  const opened = await simple.open();
  if (!opened.simple) {
    showReason(opened.reason);
    message('此流程图超出简易模式的范围,仍在 BPMN 高级模式', 'error');
    return opened;
  }
  showReason('');
  setMode('simple');
  message('已切换到简易模式');
  return opened;
}

$('[data-mode-switch="bpmn"]').addEventListener('click', () => guarded(toBpmn)());
$('[data-mode-switch="simple"]').addEventListener('click', () => guarded(toSimple)());

// ------------------------------------------------------------------ load
async function load() {
  const asking = simple.open().catch((err) => {
    if (err.status === 404) return null; // a server without the simple designer: BPMN mode only
    throw err;
  });
  await refreshFiles(true);
  const opened = await asking;
  if (opened && opened.simple) setMode('simple');
  else {
    setMode('bpmn');
    if (opened) showReason(opened.reason);
    else $('[data-mode-switch="simple"]').hidden = true;
  }
  root.dataset.ready = 'true';
}

const ready = load().catch((err) => {
  message(`无法载入草稿:${errorText(err)}`, 'error');
  throw err;
});

window.xiangflowStudio = {
  modeler, formBuilder, dmnModeler, ready, state, guard, sampleFields, simple,
  save, validate, deploy, dryRun, toBpmn, toSimple, openForm, addForm, openDmn, addDmn, showTab, syncEditors,
  properties: {
    get: props.getSpiffProperty,
    set: (element, name, value) => props.setSpiffProperty(modeler.get('injector'), element, name, value),
    setLaneRole: (lane, role) => props.setLaneRole(modeler.get('injector'), lane, role, config.roles),
    setAction: (element, action, on) => props.setAction(modeler.get('injector'), element, action, on),
    setTimerDays: (element, days, kind) => props.setTimerDays(modeler.get('injector'), element, days, kind),
    setCondition: (flow, body) => props.setCondition(modeler.get('injector'), flow, body),
    setCalledDecision: (element, id) => props.setCalledDecision(modeler.get('injector'), element, id),
  },
};
