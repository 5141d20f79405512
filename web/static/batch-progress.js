// Notice batch page: poll the batch's progress and show it (a static file, so it runs under the CSP).
(function () {
  var box = document.getElementById("batch");
  var url = box.dataset.progressUrl;
  function show(p) {
    document.getElementById("batch-status").textContent = p.status_label + " " + p.percent + "%";
    document.getElementById("batch-done").textContent = p.done;
    var bar = document.getElementById("batch-progress");
    bar.max = p.total || 1; bar.value = p.done + p.failed;
    var list = document.getElementById("batch-errors");
    list.innerHTML = "";
    p.errors.forEach(function (e) { var li = document.createElement("li"); li.textContent = e.message; list.appendChild(li); });
    if (p.finished) { document.getElementById("batch-downloads").hidden = false; }
    return p.finished;
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (p) { if (!show(p)) { setTimeout(poll, 1000); } })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
