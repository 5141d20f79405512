// Phone layout helpers (no inline script, so it runs under the Content-Security-Policy):
// label every table cell with its column header, so the ≤ 640 px stylesheet can show rows as cards;
// on a phone, fold the inbox search unless a filter is set; filter the people pickers as one types;
// hide a form field while its form-js ``conditional.hide`` holds (=key = "v" / =key != "v", as the server reads it).
(function () {
  "use strict";
  document.querySelectorAll("main table").forEach(function (table) {
    var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    if (!heads.length) return;
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      Array.prototype.forEach.call(tr.children, function (td, i) {
        if (heads[i] && !td.hasAttribute("data-label")) td.setAttribute("data-label", heads[i]);
      });
    });
  });
  // people pickers: filter the offered names as one types
  document.querySelectorAll("[data-people-filter]").forEach(function (input) {
    var items = input.parentNode.querySelectorAll("[data-people-item]");
    input.addEventListener("input", function () {
      var q = input.value.trim();
      items.forEach(function (item) { item.hidden = q !== "" && item.textContent.indexOf(q) < 0; });
    });
  });
  document.querySelectorAll("[data-hide-when]").forEach(function (field) {
    var m = /^=\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|=)\s*"([^"\\]*)"\s*$/.exec(field.getAttribute("data-hide-when"));
    var form = field.closest("form");
    if (!m || !form) return;
    var key = m[1], op = m[2], expected = m[3];
    function update() {
      var chosen = form.querySelector('[name="' + key + '"]:checked') ||
        form.querySelector('select[name="' + key + '"], input[name="' + key + '"]:not([type=radio]):not([type=checkbox])');
      var equal = !!chosen && chosen.value === expected;
      var hidden = op === "=" ? equal : !equal;
      field.hidden = hidden;
      field.querySelectorAll("input, select, textarea").forEach(function (input) { input.disabled = hidden; });
    }
    form.querySelectorAll('[name="' + key + '"]').forEach(function (input) {
      input.addEventListener("change", update);
    });
    update();
  });
  if (window.matchMedia && window.matchMedia("(max-width: 640px)").matches) {
    document.querySelectorAll("details.search-box[data-fold-on-phone]").forEach(function (box) {
      box.open = false;
    });
  }
})();
