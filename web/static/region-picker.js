// The inbox's region picker: cascading selects (county → township → village). The server renders the
// selects down to the chosen region; choosing a region here replaces the selects below it with one listing
// its children (GET /regions/<code>/children, the user's jurisdiction only). Every select submits
// ``region``; the server takes the deepest one inside the one above it, so the form also works unscripted.
(function () {
  "use strict";
  document.querySelectorAll("[data-region-picker]").forEach(function (picker) {
    var url = picker.getAttribute("data-children-url");
    var pending = 0;
    function below(select) {
      var out = [], node = select.nextElementSibling;
      while (node) { if (node.matches("[data-region-level]")) out.push(node); node = node.nextElementSibling; }
      return out;
    }
    function onChange(event) {
      var select = event.target;
      if (!select.matches("[data-region-level]")) return;
      below(select).forEach(function (s) { s.remove(); });
      var code = select.value;
      if (!code) return;
      var name = select.options[select.selectedIndex].textContent.trim();
      var ticket = ++pending;
      fetch(url.replace("CODE", encodeURIComponent(code)), {credentials: "same-origin",
                                                             headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : {regions: []}; })
        .then(function (data) {
          if (ticket !== pending || select.value !== code || !data.regions || !data.regions.length) return;
          var child = document.createElement("select");
          child.name = "region";
          child.setAttribute("data-region-level", "");
          child.setAttribute("aria-label", name + "下辖地区");
          child.add(new Option("全部(" + name + ")", ""));
          data.regions.forEach(function (r) { child.add(new Option(r.name, r.code)); });
          select.insertAdjacentElement("afterend", child);
        })
        .catch(function () { /* offline: the chosen region is still searched as a whole */ });
    }
    picker.addEventListener("change", onChange);
  });
})();
