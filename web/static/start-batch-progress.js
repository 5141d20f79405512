// 批量发起 progress page: poll the job and show its counts and each subject's outcome (a static file, under the CSP).
(function () {
  var box = document.getElementById("start-batch");
  if (!box) { return; }
  var url = box.dataset.progressUrl;
  function cell(text, href) {
    var td = document.createElement("td");
    if (href) { var a = document.createElement("a"); a.href = href; a.textContent = text; td.appendChild(a); }
    else { td.textContent = text; }
    return td;
  }
  function show(p) {
    document.getElementById("start-batch-status").textContent = p.status_label + " " + p.percent + "%";
    var bar = document.getElementById("start-batch-bar");
    bar.max = p.total || 1; bar.value = p.handled;
    document.getElementById("start-batch-counts").textContent =
      "共 " + p.total + " 个:已发起 " + p.started + ",已跳过 " + p.skipped + ",未发起 " + p.failed;
    var body = document.getElementById("start-batch-results");
    body.innerHTML = "";
    p.results.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.testid = "start-batch-result";
      tr.setAttribute("data-testid", "start-batch-result");
      tr.setAttribute("data-outcome", r.outcome);
      tr.appendChild(cell(r.name));
      tr.appendChild(cell(r.outcome_label));
      tr.appendChild(cell(r.message, r.case_id ? "/cases/" + r.case_id : null));
      body.appendChild(tr);
    });
    return p.finished;
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (p) { if (!show(p)) { setTimeout(poll, 700); } })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
