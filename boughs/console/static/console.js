// The console's few behaviours beyond htmx: confirmations and error swaps.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
  });
  if (window.htmx) {
    // A rejected form (422) and an error page come back as HTML meant to be shown.
    window.htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "[45]..", swap: true, error: true }
    ];
  }
  document.addEventListener("keydown", function (event) {
    var box = document.getElementById("switcher-q");
    if (!box) { return; }
    if (event.key === "/" && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
      event.preventDefault();
      box.focus();
      return;
    }
    // In the switcher: arrows walk the results, Escape closes them.
    var results = document.getElementById("switcher-results");
    var inSwitcher = document.activeElement === box || results.contains(document.activeElement);
    if (!inSwitcher) { return; }
    var options = Array.prototype.slice.call(results.querySelectorAll("a[role=option]"));
    var at = options.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && options.length) {
      event.preventDefault();
      options[Math.min(at + 1, options.length - 1)].focus();
    } else if (event.key === "ArrowUp" && options.length) {
      event.preventDefault();
      if (at <= 0) { box.focus(); } else { options[at - 1].focus(); }
    } else if (event.key === "Escape") {
      results.innerHTML = "";
      box.focus();
    }
  });
})();
