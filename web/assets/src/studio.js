// 流程设计 (procedure studio): bpmn-js Modeler in Chinese with the XiangFlow properties panel and
// bpmnlint, form-js's editor for forms, dmn-js for decision tables. The draft lives on the server
// (/studio/api/drafts/<id>): this page loads its files, edits them and saves them back; the server
// validates (problems per element id, marked here on the diagram), dry-runs and deploys.
// window.xiangflowStudio exposes the same functions the buttons use (for automation and tests).
import 'bpmn-js/dist/assets/diagram-js.css';
import 'bpmn-js/dist/assets/bpmn-js.css';
import 'bpmn-js/dist/assets/bpmn-font/css/bpmn-embedded.css';
import '@bpmn-io/properties-panel/dist/assets/properties-panel.css';
import 'bpmn-js-bpmnlint/dist/assets/css/bpmn-js-bpmnlint.css';
import '@bpmn-io/form-js-viewer/dist/assets/form-js.css';
import '@bpmn-io/form-js-editor/dist/assets/form-js-editor.css';
import 'dmn-js/dist/assets/diagram-js.css';
import 'dmn-js/dist/assets/dmn-js-shared.css';
import 'dmn-js/dist/assets/dmn-js-drd.css';
import 'dmn-js/dist/assets/dmn-js-decision-table.css';
import 'dmn-js/dist/assets/dmn-js-decision-table-controls.css';
import 'dmn-js/dist/assets/dmn-js-literal-expression.css';
import 'dmn-js/dist/assets/dmn-font/css/dmn-embedded.css';
import './studio.css';

import { FormEditor } from '@bpmn-io/form-js-editor';
import BpmnModeler from 'bpmn-js/lib/Modeler';
import lintModule from 'bpmn-js-bpmnlint';
import zn from 'bpmn-js-i18n/translations/zn';
import { BpmnPropertiesPanelModule, BpmnPropertiesProviderModule } from 'bpmn-js-properties-panel';
import DmnModeler from 'dmn-js/lib/Modeler';

import lintConfig from '../.bpmnlintrc';
import spiffModdle from './spiffworkflow-moddle.json';
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
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const state = { files: {}, lockVersion: null, bpmnKey: null, currentForm: null, currentDmn: null, problems: [] };
const $ = (sel) => root.querySelector(sel);

function message(text, kind = 'ok') {
  const box = $('[data-testid="studio-message"]');
  box.textContent = text;
  box.className = `studio-message studio-message-${kind}`;
}

async function api(url, body) {
  const response = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRFToken': csrf, Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  let data = {};
  try { data = await response.json(); } catch (err) { data = { message: `服务器返回 ${response.status}` }; }
  if (!response.ok) {
    const error = new Error(data.message || data.error || `请求失败(${response.status})`);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

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
  },
});
const formEditor = new FormEditor({ container: '#form-editor' });
const dmnModeler = new DmnModeler({ container: '#dmn-editor', common: { translate } });

// ------------------------------------------------------------------ tabs
function showTab(name) {
  root.querySelectorAll('[data-tab]').forEach((a) => a.classList.toggle('active', a.dataset.tab === name));
  root.querySelectorAll('[data-pane]').forEach((pane) => { pane.hidden = pane.dataset.pane !== name; });
  if (name === 'bpmn') modeler.get('canvas').resized();
  if (name === 'dmn') {
    const viewer = dmnModeler.getActiveViewer();
    if (viewer && viewer.get('canvas', false)) viewer.get('canvas').resized();
  }
}

root.querySelectorAll('[data-tab]').forEach((a) => a.addEventListener('click', async (event) => {
  event.preventDefault();
  await syncEditors();
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

// form-js's editor labels a date field with dateLabel; the server's task page renders label
function normalizeSchema(schema) {
  const walk = (components) => (components || []).forEach((c) => {
    if (c.type === 'datetime' && !c.label && (c.dateLabel || c.timeLabel)) c.label = c.dateLabel || c.timeLabel;
    walk(c.components);
  });
  walk(schema.components);
  return schema;
}

function syncForm() {
  if (state.currentForm) {
    state.files[`form/${state.currentForm}`] = JSON.stringify(normalizeSchema(formEditor.saveSchema()), null, 2);
  }
}

async function openForm(key) {
  syncForm();
  const schema = JSON.parse(state.files[`form/${key}`]);
  await formEditor.importSchema(schema);
  state.currentForm = key;
  $('#form-current').textContent = `正在编辑表单 ${key}`;
  renderList('form-list', formKeys(), key, openForm, (k) => k);
  return formEditor;
}

async function addForm(name) {
  const short = (name || '').trim();
  if (!/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(short)) throw new Error('表单代码只能是字母、数字、下划线和连字符');
  const key = `${config.code}/${short}`;
  if (state.files[`form/${key}`]) throw new Error(`表单 ${key} 已存在`);
  state.files[`form/${key}`] = JSON.stringify({
    type: 'default', id: `Form_${short}`, components: [], schemaVersion: 16,
  }, null, 2);
  await openForm(key);
  return key;
}

$('#new-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const key = await addForm($('#new-form-name').value);
    $('#new-form-name').value = '';
    message(`已新建表单 ${key}`);
  } catch (err) {
    message(err.message, 'error');
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
    message(err.message, 'error');
  }
});

// ------------------------------------------------------------------ settings (procedure.json)
function manifest() {
  return JSON.parse(state.files['procedure.json']);
}

function fillSettings() {
  const m = manifest();
  const settings = { ...(m.settings || {}) };
  $('#set-name').value = m.name || '';
  $('#set-subject').value = m.subject_kind || 'household';
  $('#set-day-kind').value = settings.day_kind || 'natural';
  delete settings.day_kind;
  $('#set-description').value = m.description || '';
  $('#set-settings').value = JSON.stringify(settings, null, 2);
}

function syncSettings() {
  const m = manifest();
  let settings;
  try {
    settings = JSON.parse($('#set-settings').value || '{}');
  } catch (err) {
    throw new Error(`流程参数不是有效的 JSON:${err.message}`);
  }
  if (!settings || typeof settings !== 'object' || Array.isArray(settings)) throw new Error('流程参数必须是 JSON 对象');
  m.name = $('#set-name').value.trim();
  m.subject_kind = $('#set-subject').value;
  m.description = $('#set-description').value;
  m.settings = { ...settings, day_kind: $('#set-day-kind').value };
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

async function save() {
  await syncEditors();
  const data = await api(config.urls.draft, { files: state.files, lock_version: state.lockVersion });
  state.lockVersion = data.lock_version;
  state.files = data.files;
  $('[data-testid="draft-status"]').textContent = '编辑中';
  message('草稿已保存');
  return data;
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
    item.textContent = `${p.where}:${p.message}${p.file && p.element_id ? `(${p.file})` : ''}`;
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

async function dryRun(sampleText) {
  await save();
  const text = sampleText !== undefined ? sampleText : $('#dryrun-sample').value;
  try {
    const data = await api(config.urls.dryRun, { sample: text });
    clearPathMarks();
    const registry = modeler.get('elementRegistry');
    const canvas = modeler.get('canvas');
    data.path.forEach((id) => { if (registry.get(id)) canvas.addMarker(id, 'xf-dry-path'); });
    const box = $('#dryrun-result');
    box.replaceChildren();
    const head = document.createElement('p');
    head.setAttribute('data-testid', 'dryrun-outcome');
    head.textContent = data.completed ? `流程走完,案件状态:${props.CASE_STATUS_LABELS[data.status] || data.status}`
      : `未走完:${data.error || '等待中'}`;
    box.append(head);
    const list = document.createElement('ol');
    list.setAttribute('data-testid', 'dryrun-steps');
    for (const step of data.steps) {
      const item = document.createElement('li');
      item.textContent = `${step.name}:${step.detail}`;
      item.dataset.elementId = step.element_id;
      list.append(item);
    }
    box.append(list);
    const path = document.createElement('p');
    path.className = 'muted';
    path.setAttribute('data-testid', 'dryrun-path');
    path.textContent = `经过的元素:${data.path.join(' → ')}`;
    box.append(path);
    message(data.completed ? '试运行完成,经过的元素已在流程图上标出' : '试运行未走完', data.completed ? 'ok' : 'error');
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
      message(err.message, 'error');
      return { ok: false, error: err.message };
    }
  };
}

root.querySelector('[data-action="save"]').addEventListener('click', guarded(save));
root.querySelector('[data-action="validate"]').addEventListener('click', guarded(validate));
root.querySelector('[data-action="deploy"]').addEventListener('click', guarded(deploy));
$('#dryrun-form').addEventListener('submit', (event) => { event.preventDefault(); guarded(dryRun)(); });

// ------------------------------------------------------------------ load
async function load() {
  const data = await api(config.urls.draft);
  state.files = data.files;
  state.lockVersion = data.lock_version;
  state.bpmnKey = Object.keys(state.files).find((k) => k.startsWith('bpmn/'));
  const { warnings } = await modeler.importXML(state.files[state.bpmnKey]);
  if (warnings && warnings.length) message(`流程图有 ${warnings.length} 条导入警告`, 'error');
  const canvas = modeler.get('canvas');
  if (modeler.get('elementRegistry').getAll().length > 1) canvas.zoom('fit-viewport', 'auto');
  fillSettings();
  const forms = formKeys();
  renderList('form-list', forms, null, openForm, (k) => k);
  if (forms.length) await openForm(forms[0]);
  const dmns = dmnKeys();
  renderList('dmn-list', dmns, null, openDmn, (k) => k.slice(4));
  if (dmns.length) await openDmn(dmns[0]);
  root.dataset.ready = 'true';
}

const ready = load().catch((err) => {
  message(`无法载入草稿:${err.message}`, 'error');
  throw err;
});

window.xiangflowStudio = {
  modeler, formEditor, dmnModeler, ready, state,
  save, validate, deploy, dryRun, openForm, addForm, openDmn, addDmn, showTab, syncEditors,
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
