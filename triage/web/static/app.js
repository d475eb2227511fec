// 12345 环境投诉分拣与办理 — a few comforts on top of plain forms; every page works without this file.
(function () {
  "use strict";

  // Bulk accept: "select all" and a button that says how many are chosen.
  function setupBulk() {
    var all = document.querySelector("[data-select-all]");
    var button = document.querySelector("[data-bulk-button]");
    var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=ids][form=bulk]"));
    if (!button || !boxes.length) return;
    var label = button.textContent;
    function update() {
      var n = boxes.filter(function (b) { return b.checked; }).length;
      button.disabled = n === 0;
      button.textContent = n ? label + "（" + n + " 件）" : label;
      if (all) all.checked = n === boxes.length;
    }
    if (all) all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      update();
    });
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    update();
  }

  // Deadlines within the day are shown in hours: keep them current without reloading.
  function hoursText(ms) {
    var h = Math.floor(Math.abs(ms) / 3600000);
    var body = h < 1 ? "不足 1 小时" : h + " 小时";
    return (ms >= 0 ? "剩余 " : "超期 ") + body;
  }
  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-deadline"));
      if (isNaN(due)) return;
      var left = due - now;
      if (Math.abs(left) >= 24 * 3600000) return;  // working days: the server's calendar decides
      var text = el.querySelector(".cd-text");
      if (text) text.textContent = hoursText(left);
      if (left < 0) el.classList.add("cd-overdue");
    });
  }

  // The queue reloads every five minutes, unless someone is choosing or typing.
  function setupRefresh() {
    var table = document.querySelector("[data-autorefresh]");
    var loading = document.querySelector("[data-demo-loading]");
    if (!table && !loading) return;
    var every = loading ? 4000 : 300000;
    setInterval(function () {
      var busy = document.querySelector("input[name=ids]:checked") ||
        (document.activeElement && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName));
      if (!busy || loading) window.location.reload();
    }, every);
  }

  // Override form: list only the subtypes of the chosen type.
  function setupSubtypes() {
    document.querySelectorAll("[data-override]").forEach(function (form) {
      var type = form.querySelector("[data-type-select]");
      var sub = form.querySelector("[data-subtype-select]");
      if (!type || !sub) return;
      function filter() {
        var t = type.value;
        sub.querySelectorAll("optgroup").forEach(function (g) {
          var show = !t || g.getAttribute("data-type") === t;
          g.hidden = !show;
          g.disabled = !show;
        });
        var chosen = sub.options[sub.selectedIndex];
        if (chosen && chosen.value && t && chosen.getAttribute("data-type") !== t) sub.value = "";
      }
      type.addEventListener("change", filter);
      sub.addEventListener("change", function () {
        var chosen = sub.options[sub.selectedIndex];
        if (chosen && chosen.value && !type.value) type.value = chosen.getAttribute("data-type");
      });
      filter();
    });
  }

  // Long-running forms (drafting, import): say so and prevent a second submit. A file over the size limit is
  // refused here already, with the same message the server would give.
  function setupBusy() {
    document.querySelectorAll("form[data-busy]").forEach(function (form) {
      form.addEventListener("submit", function (e) {
        var file = form.querySelector("input[type=file][data-max-bytes]");
        var box = form.querySelector("[data-size-error]");
        if (file && file.files && file.files[0] && file.files[0].size > Number(file.getAttribute("data-max-bytes"))) {
          e.preventDefault();
          if (box) {
            box.textContent = "文件超过 " + file.getAttribute("data-max-label") +
              " 的上限，请拆分后分批导入，或在服务器上用命令行 triage cases import。";
            box.hidden = false;
          }
          return;
        }
        var b = form.querySelector("button[type=submit]");
        if (b) {
          setTimeout(function () { b.disabled = true; }, 0);
          b.textContent = form.getAttribute("data-busy");
        }
      });
    });
  }

  // A refused action re-renders the page at the form's POST address: show the reason beside the form that was
  // sent (not only at the top, out of sight), scroll there, and put the page's own address back so that a reload
  // does not post the form again.
  function setupFocus() {
    var body = document.body;
    var id = body.getAttribute("data-focus");
    var canonical = body.getAttribute("data-canonical");
    if (canonical && window.history.replaceState) {
      window.history.replaceState(null, "", canonical + (id ? "#" + id : ""));
    }
    var target = id && document.getElementById(id);
    if (!target) return;
    var error = document.querySelector("main > .flash-error");
    if (error) {
      var copy = error.cloneNode(true);
      copy.setAttribute("data-near-form", "");
      target.insertBefore(copy, target.firstChild);
    }
    target.scrollIntoView({ block: "start" });
  }

  function setupMisc() {
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
    document.querySelectorAll("[data-back]").forEach(function (a) {
      a.addEventListener("click", function (e) {
        if (window.history.length > 1) { e.preventDefault(); window.history.back(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupFocus();
    setupBulk();
    setupSubtypes();
    setupBusy();
    setupMisc();
    tickCountdowns();
    setInterval(tickCountdowns, 30000);
    setupRefresh();
  });
})();
