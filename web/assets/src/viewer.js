// Case diagram: bpmn-js viewer with done / current / returned steps marked.
import NavigatedViewer from 'bpmn-js/lib/NavigatedViewer';

// Labels stay readable: the diagram fills the box's width but is never drawn smaller than MIN_ZOOM
// (a wide procedure then scrolls sideways inside the box, starting at the current step); the box is
// as tall as the drawing at that zoom, so no empty band is left below it.
const MIN_ZOOM = 0.8;
const MAX_HEIGHT = 560;

function fitLegibly(canvas, registry, container, marks) {
  const inner = canvas.viewbox().inner;
  if (!inner || !inner.width) {
    canvas.zoom('fit-viewport');
    return;
  }
  const pad = 24;
  const width = container.clientWidth || 800;
  const zoom = Math.max(MIN_ZOOM, Math.min(1, width / (inner.width + 2 * pad)));
  const height = Math.max(180, Math.min(MAX_HEIGHT, (inner.height + 2 * pad) * zoom));
  container.style.height = height + 'px';
  canvas.resized();
  const viewWidth = width / zoom;
  let x = inner.x - pad;
  const current = (marks.current || []).map((id) => registry.get(id)).find(Boolean);
  if (current && viewWidth < inner.width + 2 * pad) {
    // the current step about a third from the left, without scrolling past either end of the drawing
    const furthest = inner.x + inner.width + pad - viewWidth;
    x = Math.max(inner.x - pad, Math.min(furthest, current.x - viewWidth / 3));
  }
  canvas.viewbox({ x, y: inner.y - pad, width: viewWidth, height: height / zoom });
}

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
  fitLegibly(canvas, registry, container, marks);
  container.dataset.rendered = 'true';
}

// A diagram inside a closed <details> (the task page's 流程进度) is drawn when it is first opened:
// a hidden box has no width to fit the drawing to.
function renderWhenShown(container) {
  const box = container.closest('details');
  if (!box || box.open) {
    renderCaseDiagram(container);
    return;
  }
  box.addEventListener('toggle', function onToggle() {
    if (!box.open) return;
    box.removeEventListener('toggle', onToggle);
    renderCaseDiagram(container);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('[data-bpmn-viewer]').forEach(renderWhenShown);
});
