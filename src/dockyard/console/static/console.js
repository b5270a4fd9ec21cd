// Dockyard console: small progressive enhancements (everything works without them).
// htmx.min.js is htmx 2.0.11 (https://htmx.org, BSD Zero Clause licence, htmx.LICENSE.txt).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const copy = target.closest("[data-copy]");
    if (copy) {
      const text = copy.getAttribute("data-copy") || "";
      const done = function () { copy.setAttribute("data-copied", "true"); copy.textContent = "✓"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, done);
      } else {
        const area = document.createElement("textarea");
        area.value = text; document.body.appendChild(area); area.select();
        try { document.execCommand("copy"); } catch (e) { /* shown anyway */ }
        area.remove(); done();
      }
      return;
    }
    const toggle = target.closest("[data-nav-toggle]");
    if (toggle) {
      const nav = document.getElementById("sidebar");
      if (nav) {
        const open = nav.classList.toggle("open");
        toggle.setAttribute("aria-expanded", String(open));
      }
    }
  });
})();
