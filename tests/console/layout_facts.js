// What tests/console/test_browser_layout.py measures on each page, in one evaluate.
() => {
  const lines = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = new Set();
    for (const r of range.getClientRects()) { if (r.width > 0.5) tops.add(Math.round(r.top)); }
    // rects of one line differ by a pixel or two (icons, code); count lines apart by 6px+
    const sorted = [...tops].sort((a, b) => a - b);
    let count = 0, last = -100;
    for (const top of sorted) { if (top - last > 6) { count++; last = top; } }
    return count;
  };
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const wrapped = [];
  for (const el of document.querySelectorAll("main td.num, main .kind, main .tag, main .copyable code, main .label-chip, main td.nowrap")) {
    if (visible(el) && lines(el) > 1) wrapped.push(el.className + ": " + el.textContent.trim().slice(0, 60));
  }
  const tabs = [...document.querySelectorAll(".tabs a")].map((a) => a.getBoundingClientRect().top);
  const tabBar = document.querySelector(".tabs");
  const rowButtons = [...document.querySelectorAll("main td .button, main .actions .button, main .chip-row .button")]
    .filter(visible).map((b) => Math.round(b.getBoundingClientRect().height));
  const chips = [...document.querySelectorAll(".chip-item")].map((chip) => {
    const label = chip.querySelector(".label-chip").getBoundingClientRect();
    const button = chip.querySelector("button");
    const box = button ? button.getBoundingClientRect() : label;
    return Math.abs((box.top + box.bottom) / 2 - (label.top + label.bottom) / 2);
  });
  const stacked = [...document.querySelectorAll("main table")].filter(visible).map((t) => ({
    stack: t.classList.contains("stack"),
    display: getComputedStyle(t.querySelector("tbody tr") || t).display,
    fits: t.getBoundingClientRect().right <= document.documentElement.clientWidth + 1,
  }));
  const kinds = [...document.querySelectorAll("main .kind")].map((k) => ({
    icon: k.querySelector("svg") ? Math.round(k.querySelector("svg").getBoundingClientRect().width) : 0,
    text: k.textContent.trim(),
  }));
  const topbar = document.querySelector(".topbar").getBoundingClientRect();
  const sidebar = document.querySelector("#sidebar");
  // The innermost elements sticking out on the right, to name the culprit in a failure.
  const clipped = (el) => {
    for (let up = el.parentElement; up; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") {
        return up.getBoundingClientRect().right <= document.documentElement.clientWidth + 1;
      }
    }
    return false;
  };
  const overflowing = [];
  for (const el of document.querySelectorAll("body *")) {
    if (clipped(el)) continue;
    if (overflowing.length < 5 && visible(el) && el.getBoundingClientRect().right > document.documentElement.clientWidth + 1
        && ![...el.children].some((c) => c.getBoundingClientRect().right > document.documentElement.clientWidth + 1)) {
      overflowing.push(el.tagName.toLowerCase() + "." + el.className + " " + el.textContent.trim().slice(0, 40));
    }
  }
  for (const el of document.querySelectorAll("body *")) {
    if (overflowing.length < 5 && getComputedStyle(el).overflowX === "visible" && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0
        && ![...el.children].some((c) => c.scrollWidth > c.clientWidth + 1)) {
      overflowing.push("content of " + el.tagName.toLowerCase() + "." + el.className + " " + el.scrollWidth + ">" + el.clientWidth);
    }
  }
  return {
    overflowing,
    status: document.title,
    scrollWidth: document.documentElement.scrollWidth,
    width: document.documentElement.clientWidth,
    wrapped, tabs,
    tabsOverflow: tabBar ? tabBar.scrollWidth - tabBar.clientWidth : 0,
    rowButtons, chips, stacked, kinds,
    topbarHeight: Math.round(topbar.height),
    sidebarShown: sidebar ? visible(sidebar) : false,
    background: getComputedStyle(document.body).backgroundColor,
    lang: document.documentElement.lang,
  };
}
