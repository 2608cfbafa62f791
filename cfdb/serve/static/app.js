// cfdb explorer: draws the plotly figures of a page and fills the grid page's unit panel.
(function () {
  "use strict";
  var config = { displaylogo: false, responsive: true };

  function draw(el, spec) {
    return Plotly.newPlot(el, spec.data, spec.layout, config);
  }

  function drawAll() {
    document.querySelectorAll("div.chart[data-spec]").forEach(function (el) {
      var script = document.getElementById(el.dataset.spec);
      if (script) draw(el, JSON.parse(script.textContent));
    });
  }

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return Number(v.toPrecision(4)).toString();
    return String(v);
  }

  function text(tag, content, cls) {
    var el = document.createElement(tag);
    el.textContent = content;
    if (cls) el.className = cls;
    return el;
  }

  function highlight(pairs, nslices) {
    var heat = document.getElementById("heatmap");
    if (!heat || !heat.layout) return;
    var shapes = [];
    pairs.slice(0, 200).forEach(function (p) {
      [[p[0], "#1f77b4"], [p[1], "#d62728"]].forEach(function (b) {
        if (b[0] === null) return;
        shapes.push({
          type: "rect", xref: "x", yref: "y", x0: -0.5, x1: nslices - 0.5,
          y0: b[0] - 0.5, y1: b[0] + 0.5, line: { color: b[1], width: 3 }
        });
      });
    });
    Plotly.relayout(heat, { shapes: shapes });
  }

  function selectUnit(unit) {
    var page = document.getElementById("grid-page");
    if (!page) return;
    var d = page.dataset;
    var url = "/grid/" + encodeURIComponent(d.grid) + "/unit?" + new URLSearchParams({
      unit: unit, metric: d.metric, order: d.order, slice: d.slice
    });
    document.querySelectorAll("tr.unit-row").forEach(function (tr) {
      tr.classList.toggle("selected", tr.dataset.unit === String(unit));
    });
    fetch(url).then(function (r) { return r.json(); }).then(function (body) {
      var box = document.getElementById("unit-values");
      var hint = document.getElementById("unit-hint");
      box.innerHTML = "";
      if (body.error) { box.appendChild(text("pre", body.error, "error")); return; }
      hint.textContent = "Unit " + body.unit.UnitId + " (" + body.unit.Rows + " rows): " + body.npairs +
        " pairs (S, S ∪ {unit}) measured; highlighted in the heat map, S in blue and S ∪ {unit} in red.";
      var table = document.createElement("table");
      table.className = "unit-values";
      var head = document.createElement("tr");
      body.columns.forEach(function (c) { head.appendChild(text("th", c)); });
      table.appendChild(head);
      body.rows.forEach(function (row) {
        var tr = document.createElement("tr");
        row.forEach(function (v, i) { tr.appendChild(text("td", fmt(v), i ? "num" : "")); });
        table.appendChild(tr);
      });
      box.appendChild(table);
      var curve = document.getElementById("unit-curve");
      if (body.curve) { draw(curve, body.curve); } else { Plotly.purge(curve); curve.innerHTML = ""; }
      var links = document.getElementById("unit-sql");
      links.innerHTML = "";
      body.sql.forEach(function (s) {
        var a = text("a", "SQL: " + s.title, "sql");
        a.href = s.href;
        links.appendChild(a);
        links.appendChild(document.createTextNode(" "));
      });
      highlight(body.pairs, Number(d.nslices));
    });
  }

  function wireGrid() {
    document.querySelectorAll("tr.unit-row").forEach(function (tr) {
      tr.addEventListener("click", function () { selectUnit(tr.dataset.unit); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") selectUnit(tr.dataset.unit); });
    });
    var bars = document.getElementById("unitbars");
    if (bars && bars.on) {
      bars.on("plotly_click", function (ev) {
        if (ev.points && ev.points.length) selectUnit(ev.points[0].customdata);
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll();
    wireGrid();
  });
})();
