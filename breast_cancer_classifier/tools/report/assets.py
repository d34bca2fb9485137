"""The report's style sheet and script, written into ``assets/`` of every report.

Plain CSS and vanilla JavaScript (no library, no network): the page opens from ``file://``.
The script reads ``data/exams.js`` (``window.BCC_EXAMS``: columns and one row per exam) and
draws one page of the exam table at a time; sorting (click a header) and filtering by QA
flag happen in the browser. ``#exams?flag=NAME`` (or ``any``, ``none``, ``failed``) opens the
table filtered. When the first rows are in the page it sets the performance mark
``bcc-table-rendered`` and ``window.bccTimings`` (read by benchmarks/bench_report.py).
"""

CSS = """\
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0; color: #1b1b1b; background: #fafafa; }
header, main { max-width: 1400px; margin: 0 auto; padding: 0 16px; }
header h1 { margin: 16px 0 4px; font-size: 22px; }
nav a { margin-right: 14px; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 16px 0;
          padding: 4px 16px 12px; }
h2 { font-size: 18px; border-bottom: 1px solid #eee; padding-bottom: 4px; }
h3 { font-size: 15px; margin-bottom: 4px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fbfbfb; }
.banner { background: #b00000; color: #fff; font-weight: bold; padding: 10px 16px;
          font-size: 16px; }
.warning { background: #fff4e5; border-left: 4px solid #e08a00; padding: 6px 10px; margin: 6px 0; }
.muted { color: #777; }
.below td { background: #ffe5e5 !important; color: #900; }
.small td { color: #888; }
.flag { display: inline-block; background: #fff0d9; border: 1px solid #e0b070;
        border-radius: 3px; padding: 0 4px; margin: 1px 2px 1px 0; font-size: 12px;
        text-decoration: none; color: #6b3d00; }
.failed { color: #b00000; font-weight: bold; }
figure { display: inline-block; margin: 6px 12px 6px 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #ddd; background: #fff; }
.cards { display: flex; flex-wrap: wrap; gap: 0 28px; }
.models { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr));
          gap: 0 24px; }
.model { min-width: 0; overflow-x: auto; }
.model figure { display: block; margin: 6px 0; }
.model figure.half { display: inline-block; width: 48%; margin-right: 1%; }
.views { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
         gap: 0 24px; }
.view { min-width: 0; }
figcaption { font-size: 12px; color: #555; }
.pictures img { background: #000; }
#exam-table { overflow-x: auto; }
#exam-table th[data-key] { cursor: pointer; white-space: nowrap; }
#exam-table th.group { text-align: center; background: #e4e8ee; }
#exam-table th.sorted-asc::after { content: " \\25B2"; }
#exam-table th.sorted-desc::after { content: " \\25BC"; }
#exam-table td.thumb { padding: 1px; background: #000; }
#exam-table td.thumb img { display: block; }
.controls { margin: 8px 0; }
.controls > * { margin-right: 10px; }
.legend { display: inline-block; width: 160px; height: 12px; vertical-align: middle;
          border: 1px solid #999; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dl.settings dt { font-weight: 600; }
dl.settings dd { margin: 0; word-break: break-all; }
"""

JS = """\
(function () {
  "use strict";
  var data = window.BCC_EXAMS;
  var root = document.getElementById("exam-table");
  if (!data || !root) { return; }
  var keys = data.columns.map(function (c) { return c.key; });
  var col = {};
  keys.forEach(function (k, i) { col[k] = i; });
  var state = { key: "exam", desc: false, filter: "", page: 0, size: 50 };
  var view = data.rows.slice();

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (a) { node.setAttribute(a, attrs[a]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function matches(row) {
    var f = state.filter;
    if (!f) { return true; }
    var flags = row[col.qa_flags] ? row[col.qa_flags].split(";") : [];
    if (f === "any") { return flags.length > 0; }
    if (f === "none") { return flags.length === 0; }
    if (f === "failed") { return !!row[col.failed]; }
    return flags.indexOf(f) >= 0;
  }

  function compare(a, b) {
    var i = col[state.key], x = a[i], y = b[i];
    var xEmpty = x === null || x === "", yEmpty = y === null || y === "";
    if (xEmpty || yEmpty) { return xEmpty === yEmpty ? a[0] - b[0] : (xEmpty ? 1 : -1); }
    var r = (typeof x === "number" && typeof y === "number") ? x - y
      : String(x).localeCompare(String(y), undefined, { numeric: true });
    if (r === 0) { r = a[0] - b[0]; return r; }
    return state.desc ? -r : r;
  }

  function refresh() {
    view = data.rows.filter(matches);
    view.sort(compare);
    state.page = Math.min(state.page, Math.max(0, Math.ceil(view.length / state.size) - 1));
    draw();
  }

  function cell(column, value, row) {
    var td = el("td");
    var exam = row[0];
    if (column.type === "exam") {
      td.appendChild(el("a", { href: data.pages + exam + ".html" }, exam));
    } else if (column.type === "thumb") {
      td.className = "thumb";
      if (value) {
        var a = el("a", { href: data.pages + exam + ".html" });
        a.appendChild(el("img", { src: data.thumbs + exam + ".jpg", loading: "lazy",
          alt: "exam " + exam, height: String(data.thumbHeight) }));
        td.appendChild(a);
      } else {
        td.appendChild(el("span", { "class": "muted" }, value === 0 ? "not drawn" : "failed"));
        td.className = "";
      }
    } else if (column.type === "num") {
      td.className = "num";
      td.textContent = value === null ? "\\u2013" : value.toFixed(4);
    } else if (column.type === "flags") {
      (value ? value.split(";") : []).forEach(function (f) {
        td.appendChild(el("a", { "class": "flag", href: data.qaHelp + "#" + f }, f));
      });
    } else if (column.type === "failed") {
      if (value) { td.appendChild(el("span", { "class": "failed" }, value)); }
    } else {
      td.textContent = value === null ? "" : value;
    }
    return td;
  }

  function draw() {
    var body = root.querySelector("tbody");
    var fresh = el("tbody");
    var start = state.page * state.size;
    view.slice(start, start + state.size).forEach(function (row) {
      var tr = el("tr", { "data-exam": row[0] });
      data.columns.forEach(function (c, i) { tr.appendChild(cell(c, row[i], row)); });
      fresh.appendChild(tr);
    });
    body.parentNode.replaceChild(fresh, body);
    var end = Math.min(view.length, start + state.size);
    root.querySelector(".count").textContent = view.length ?
      "exams " + (start + 1) + "\\u2013" + end + " of " + view.length +
      (view.length < data.rows.length ? " (filtered from " + data.rows.length + ")" : "") :
      "no exam matches";
    root.querySelectorAll("th[data-key]").forEach(function (th) {
      th.className = th.getAttribute("data-key") !== state.key ? "" :
        (state.desc ? "sorted-desc" : "sorted-asc");
    });
    root.querySelector(".prev").disabled = state.page === 0;
    root.querySelector(".next").disabled = end >= view.length;
  }

  function sortable(c, attrs) {
    var th = el("th", attrs || {}, c.label);
    th.setAttribute("data-key", c.key);
    if (c.title) { th.setAttribute("title", c.title); }
    th.addEventListener("click", function () {
      state.desc = state.key === c.key ? !state.desc : c.type === "num";
      state.key = c.key;
      state.page = 0;
      var t0 = performance.now();
      refresh();
      window.bccTimings.lastSortMs = performance.now() - t0;
    });
    return th;
  }

  function header() {
    // two rows: a group (a model) over its columns; ungrouped columns span both rows
    var rows = root.querySelectorAll("thead tr"), i = 0, cols = data.columns;
    while (i < cols.length) {
      if (!cols[i].group) { rows[0].appendChild(sortable(cols[i], { rowspan: "2" })); i += 1; continue; }
      var j = i;
      while (j < cols.length && cols[j].group === cols[i].group) {
        rows[1].appendChild(sortable(cols[j])); j += 1;
      }
      rows[0].appendChild(el("th", { colspan: String(j - i), "class": "group" }, cols[i].group));
      i = j;
    }
  }

  function controls() {
    var select = root.querySelector("select.filter");
    [["", "all exams"], ["any", "any QA flag"], ["none", "no QA flag"],
     ["failed", "failed exams"]].concat(data.flags.map(function (f) {
      return [f, "flag: " + f]; })).forEach(function (o) {
      select.appendChild(el("option", { value: o[0] }, o[1]));
    });
    select.addEventListener("change", function () {
      state.filter = select.value; state.page = 0; refresh(); });
    var size = root.querySelector("select.size");
    size.addEventListener("change", function () {
      state.size = parseInt(size.value, 10); state.page = 0; draw(); });
    root.querySelector(".prev").addEventListener("click", function () {
      state.page -= 1; draw(); });
    root.querySelector(".next").addEventListener("click", function () {
      state.page += 1; draw(); });
  }

  function fromHash() {
    var m = /[?&]flag=([^&]*)/.exec(window.location.hash);
    if (!m) { return; }
    state.filter = decodeURIComponent(m[1]);
    root.querySelector("select.filter").value = state.filter;
    state.page = 0;
    refresh();
    root.scrollIntoView();
  }

  window.bccTimings = {};
  header();
  controls();
  refresh();
  fromHash();
  window.addEventListener("hashchange", fromHash);
  performance.mark("bcc-table-rendered");
  window.bccTimings.tableRenderedMs = performance.now();
})();
"""
