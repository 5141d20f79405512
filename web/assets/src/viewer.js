// Case diagram: bpmn-js viewer with done / current / returned steps marked.
import NavigatedViewer from 'bpmn-js/lib/NavigatedViewer';

async function renderCaseDiagram(container) {
  const xml = JSON.parse(document.getElementById(container.dataset.xmlSource).textContent);
  const marks = JSON.parse(document.getElementById(container.dataset.marksSource).textContent);
  const viewer = new NavigatedViewer({ container });
  try {
    await viewer.importXML(xml);
  } catch (err) {
    container.textContent = '流程图无法显示:' + err.message;
    return;
  }
  const canvas = viewer.get('canvas');
  const registry = viewer.get('elementRegistry');
  for (const [kind, ids] of Object.entries(marks)) {
    for (const id of ids) {
      if (registry.get(id)) canvas.addMarker(id, 'xf-' + kind);
    }
  }
  canvas.zoom('fit-viewport');
  container.dataset.rendered = 'true';
}

document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('[data-bpmn-viewer]').forEach(renderCaseDiagram);
});
