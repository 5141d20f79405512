// Handwritten signature pad for the task page (no library): a <canvas> drawn with pointer events, so touch,
// pen and mouse all work. "确认签字" uploads the drawing as a PNG to the task's signature URL; the server
// keeps every signature (append-only) and the latest counts.
(function () {
  'use strict';

  function setUp(root) {
    var canvas = root.querySelector('canvas');
    var ctx = canvas.getContext('2d');
    var status = root.querySelector('[data-status]');
    var preview = root.querySelector('[data-preview]');
    var saveButton = root.querySelector('[data-save]');
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

    root.querySelector('[data-clear]').addEventListener('click', function () {
      blank();
      status.textContent = preview.hidden ? '尚未签字' : '已清除画板,已保存的签字仍然有效';
    });

    saveButton.addEventListener('click', function () {
      if (!strokes) {
        status.textContent = '请先在框内签名';
        return;
      }
      saveButton.disabled = true;
      status.textContent = '正在保存签字…';
      canvas.toBlob(function (blob) {
        var body = new FormData();
        body.append('csrf_token', root.dataset.csrf);
        body.append('signature', blob, 'signature.png');
        fetch(root.dataset.uploadUrl, { method: 'POST', body: body, credentials: 'same-origin' })
          .then(function (response) {
            return response.json().catch(function () { return {}; }).then(function (data) {
              if (response.status !== 201) {
                var detail = data.errors ? Object.values(data.errors).join(';') : (data.message || response.status);
                throw new Error(detail);
              }
              return data;
            });
          })
          .then(function (data) {
            preview.src = data.url;
            preview.hidden = false;
            status.textContent = '已签字(已保存)';
            root.dataset.signed = 'yes';
            blank();
          })
          .catch(function (error) { status.textContent = '签字保存失败:' + error.message; })
          .then(function () { saveButton.disabled = false; });
      }, 'image/png');
    });

    blank();
  }

  document.querySelectorAll('[data-signature-pad]').forEach(setUp);
})();
