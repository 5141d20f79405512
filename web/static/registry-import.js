// Registry import page: upload the workbook to POST /api/v1/subjects/import with a progress bar,
// first as a check (dry_run) and then for real; lists every bad row the server reports.
(function () {
  const form = document.getElementById("import-form");
  if (!form) return;
  form.addEventListener("submit", (event) => event.preventDefault());  // no inline onsubmit: the CSP blocks it
  const bar = document.getElementById("import-progress");
  const status = document.getElementById("import-status");
  const problems = document.getElementById("import-problems");
  const store = document.getElementById("import-store");

  function send(dryRun) {
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) { status.textContent = "请先选择文件"; return; }
    const data = new FormData();
    data.append("file", file);
    data.append("kind", form.dataset.kind);
    if (dryRun) data.append("dry_run", "1");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.url);
    bar.hidden = false; bar.value = 0; problems.innerHTML = "";
    status.textContent = "正在上传…";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round(50 * e.loaded / e.total); };
    xhr.upload.onload = () => { bar.value = 50; status.textContent = dryRun ? "正在逐行校验…" : "正在校验并保存…"; };
    xhr.onload = () => {
      bar.value = 100;
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {message: "服务器返回无效"}; }
      if (xhr.status === 200 || xhr.status === 201) {
        status.textContent = dryRun
          ? `校验通过:共 ${body.count} 户/个,成员 ${body.members} 人。确认无误后点击“导入”。`
          : `已导入 ${body.count} 条(成员 ${body.members} 人)。`;
        status.dataset.state = dryRun ? "checked" : "stored";
        store.disabled = !dryRun;
      } else {
        status.textContent = body.message || ("导入失败(" + xhr.status + ")");
        status.dataset.state = "refused";
        store.disabled = true;
        for (const p of body.problems || []) {
          const tr = document.createElement("tr");
          tr.dataset.testid = "import-problem";
          for (const v of [p.sheet, p.row || "", p.column, p.message]) {
            const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
          }
          problems.appendChild(tr);
        }
      }
    };
    xhr.onerror = () => { status.textContent = "网络错误,未导入"; };
    xhr.send(data);
  }
  form.addEventListener("submit", (e) => e.preventDefault());  // Enter in the file field does not post the page
  document.getElementById("import-check").addEventListener("click", () => send(true));
  store.addEventListener("click", () => send(false));
  form.querySelector("input[type=file]").addEventListener("change", () => { store.disabled = true; });
})();
