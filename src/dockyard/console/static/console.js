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
    const theme = target.closest("[data-theme-toggle]");
    if (theme) {
      // Flip what is shown now (the system's choice when none was picked), without a reload.
      event.preventDefault();
      const root = document.documentElement;
      const dark = root.dataset.theme === "dark" ||
        (root.dataset.theme !== "light" && window.matchMedia("(prefers-color-scheme: dark)").matches);
      const next = dark ? "light" : "dark";
      root.dataset.theme = next;
      document.cookie = "dy_theme=" + next + "; path=/; max-age=31536000; samesite=lax";
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

  // Times are rendered in UTC; show them in the browser's time zone and language.
  function localTimes(root) {
    const lang = document.documentElement.lang || "en";
    let format;
    try {
      format = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
    } catch (e) { return; }
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      const when = new Date(node.getAttribute("datetime"));
      if (node.dataset.local !== "1" && !isNaN(when.getTime())) {
        node.dataset.local = "1";
        node.title = node.textContent.trim();
        node.textContent = format.format(when);
      }
    });
  }
  // On a phone, tables become stacked rows (console.css, table.stack): each cell is labelled
  // with its column's heading. Without JavaScript the tables scroll sideways instead.
  function stackTables(root) {
    const tables = root.matches && root.matches("table") ? [root] : root.querySelectorAll("table");
    tables.forEach(function (table) {
      const heads = [];
      table.querySelectorAll("thead tr:first-child th").forEach(function (th) {
        const span = th.colSpan || 1;
        for (let i = 0; i < span; i++) heads.push(th.textContent.trim());
      });
      if (!heads.length) return;
      table.querySelectorAll("tbody tr").forEach(function (row) {
        let column = 0;
        Array.prototype.forEach.call(row.cells, function (cell) {
          if (heads[column] && cell.colSpan === 1 && !cell.hasAttribute("data-label")) {
            cell.setAttribute("data-label", heads[column]);
          }
          column += cell.colSpan || 1;
        });
      });
      table.classList.add("stack");
    });
  }
  // Project tabs scroll sideways on a narrow screen: bring the current one into view.
  function showCurrentTab(root) {
    const current = root.querySelector && root.querySelector(".tabs [aria-current]");
    if (current && current.parentElement) {
      const bar = current.parentElement;
      bar.scrollLeft = current.offsetLeft - (bar.clientWidth - current.offsetWidth) / 2;
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document); stackTables(document); showCurrentTab(document);
  });
  document.addEventListener("htmx:load", function (event) {
    if (event.target instanceof Element) {
      localTimes(event.target); stackTables(event.target); showCurrentTab(event.target);
    }
  });
})();
