// Phone layout helpers (no inline script, so it runs under the Content-Security-Policy):
// label every table cell with its column header, so the ≤ 640 px stylesheet can show rows as cards;
// on a phone, fold the inbox search unless a filter is set; filter the people pickers as one types.
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
  if (window.matchMedia && window.matchMedia("(max-width: 640px)").matches) {
    document.querySelectorAll("details.search-box[data-fold-on-phone]").forEach(function (box) {
      box.open = false;
    });
  }
})();
