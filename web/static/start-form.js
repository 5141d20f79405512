// 发起流程: show the subject list of the chosen procedure's kind (a project for 项目库); only that list is submitted
// (a static file, so it runs under the Content-Security-Policy)
(function () {
  const procedure = document.getElementById("procedure");
  function sync() {
    const kind = procedure.selectedOptions[0] ? procedure.selectedOptions[0].dataset.kind : "household";
    for (const box of document.querySelectorAll(".subject-choice")) {
      const on = box.dataset.kind === kind;
      box.hidden = !on;
      box.querySelector("select").disabled = !on;
      for (const a of box.querySelectorAll("a[data-testid^=register-]")) {
        a.href = a.href.replace(/procedure=[^&]*/, "procedure=" + encodeURIComponent(procedure.value));
      }
    }
  }
  procedure.addEventListener("change", sync);
  sync();
})();
