// 报告时限倒计时 — the due time counting down on the popup and the 防保科 list (docs/workbench.md).
// ES5 only (ward PCs run old browsers). Every element with data-due (ISO 8601 with offset) gets "剩余 1 小时 23 分" / "已超时 5 分",
// the same wording as the server-rendered text it replaces (cdcsync/workbench/web.py remaining_text),
// which stays as the fallback without script. Served from /static/countdown.js under the CSP's
// script-src 'self' on the pages that load it; no inline script, nothing else.
"use strict";
(function () {
  function remaining(dueMs, nowMs) {
    var secs = (dueMs - nowMs) / 1000;
    secs = secs < 0 ? Math.ceil(secs) : Math.floor(secs);  // like Python's int(): toward zero
    var minutes = Math.floor(Math.abs(secs) / 60);
    var t = minutes >= 60 ? Math.floor(minutes / 60) + " 小时 " + (minutes % 60) + " 分" : minutes + " 分";
    return { text: (secs < 0 ? "已超时 " : "剩余 ") + t, overdue: secs < 0 };
  }
  function tick() {
    var now = Date.now();
    var els = document.querySelectorAll("[data-due]");
    for (var i = 0; i < els.length; i++) {
      var due = Date.parse(els[i].getAttribute("data-due"));
      if (isNaN(due)) continue;
      var r = remaining(due, now);
      if (els[i].textContent !== r.text) els[i].textContent = r.text;
      var box = els[i].parentNode;  // no Element.closest: old browsers on ward PCs
      while (box && box.nodeType === 1 && !box.hasAttribute("data-due-box")) box = box.parentNode;
      if (box && box.nodeType === 1) {
        if (r.overdue) box.classList.add("overdue"); else box.classList.remove("overdue");
      }
    }
  }
  tick();
  setInterval(tick, 1000);
})();
