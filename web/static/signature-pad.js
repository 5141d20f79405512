// Handwritten signature pad for the task page (no library): a <canvas> drawn with pointer events, so touch,
// pen and mouse all work. The drawing goes with the task form: on submit it is written as a PNG data URL into
// the hidden signature_data field, so one request stores the signature and the decision (nothing is stored
// when the decision is refused). The server keeps every signature (append-only) and the latest counts.
(function () {
  'use strict';

  function setUp(root) {
    var canvas = root.querySelector('canvas');
    var ctx = canvas.getContext('2d');
    var status = root.querySelector('[data-status]');
    var preview = root.querySelector('[data-preview]');
    var strokes = 0;
    var drawing = null;

    function blank() {
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.strokeStyle = '#14143c';
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      strokes = 0;
    }

    function point(event) {
      var rect = canvas.getBoundingClientRect();
      return {
        x: (event.clientX - rect.left) * canvas.width / rect.width,
        y: (event.clientY - rect.top) * canvas.height / rect.height,
        // pens report pressure; mouse and most touch screens report 0.5 while pressed
        w: 1.5 + 3 * (event.pressure || 0.5),
      };
    }

    function lineTo(p) {
      ctx.lineWidth = p.w;
      ctx.beginPath();
      ctx.moveTo(drawing.x, drawing.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
      drawing = p;
    }

    canvas.addEventListener('pointerdown', function (event) {
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      drawing = point(event);
      lineTo({ x: drawing.x + 0.1, y: drawing.y + 0.1, w: drawing.w });  // a tap leaves a dot
      strokes += 1;
    });
    canvas.addEventListener('pointermove', function (event) {
      if (!drawing) return;
      event.preventDefault();
      var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      (events.length ? events : [event]).forEach(function (e) { lineTo(point(e)); });
    });
    ['pointerup', 'pointercancel', 'lostpointercapture'].forEach(function (name) {
      canvas.addEventListener(name, function () { drawing = null; });
    });

    var field = root.querySelector('[data-signature-data]');

    function showSaved() {  // the signature stored earlier (if any) is what counts when nothing is drawn
      if (root.dataset.savedSrc) {
        preview.src = root.dataset.savedSrc;
        preview.hidden = false;
      } else {
        preview.removeAttribute('src');
        preview.hidden = true;
      }
    }

    canvas.addEventListener('pointerdown', function () {
      if (field.value) {  // a drawing sent back with a refused form gives way to the new one
        field.value = '';
        showSaved();
      }
    });
    ['pointerup', 'pointercancel'].forEach(function (name) {
      canvas.addEventListener(name, function () {
        if (strokes) status.textContent = '已签名,提交时一并保存';
      });
    });

    root.querySelector('[data-clear]').addEventListener('click', function () {
      blank();
      field.value = '';
      showSaved();
      status.textContent = root.dataset.savedStatus ? '已清除画板,' + root.dataset.savedStatus : '尚未签字';
    });

    var form = root.closest('form');
    if (form) {
      form.addEventListener('submit', function () {
        if (strokes) field.value = canvas.toDataURL('image/png');
      });
    }

    blank();
    canvas.hidden = false;  // without scripts the page offers the file input (noscript) instead
    root.querySelector('[data-clear]').hidden = false;
  }

  document.querySelectorAll('[data-signature-pad]').forEach(setUp);
})();
