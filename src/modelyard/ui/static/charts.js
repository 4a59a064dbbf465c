/* modelyard: interactive metric charts (uPlot) over the JSON data block of a page.
 *
 * Every chart of the page shares one toolbar: x axis (step, wall time, relative time), log
 * scale and smoothing (an exponential moving average, the raw line kept faint behind it).
 * Each chart has its own legend (click: hide or show a candidate; double-click: show it
 * alone, or everything again) and a tooltip with each candidate's nearest point. Dragging
 * zooms on x and asks the server for the finer points of the range; a double-click on the
 * plot resets the zoom. Without JavaScript the page keeps its SVG charts. */
(function () {
  "use strict";

  var TOOLTIP_ROWS = 12;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function number(v) {
    if (v === null || v === undefined) { return ""; }
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-4 || a >= 1e7)) ? v.toExponential(4) : String(+v.toPrecision(6));
  }

  function isoTime(ms) {
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  /* The x value of point i of a series under the chosen axis. */
  function xOf(chart, series, i, axis) {
    if (axis === "step" && chart.by === "step") { return series.steps[i]; }
    if (axis === "wall") { return series.times[i] / 1000; }
    // since the candidate started (or its first point, when that came earlier)
    if (series.first === undefined) {
      series.first = series.times.reduce(function (a, b) { return Math.min(a, b); }, Infinity);
    }
    var first = series.first;
    var origin = series.start && series.start <= first ? series.start : first;
    return (series.times[i] - origin) / 1000;
  }

  function smooth(values, weight) {
    var out = new Array(values.length), last = 0, debias = 0;
    for (var i = 0; i < values.length; i++) {
      last = last * weight + (1 - weight) * values[i];
      debias = debias * weight + (1 - weight);
      out[i] = last / debias;
    }
    return out;
  }

  /* One x array for all series (uPlot's aligned data), each series mapped onto it. */
  function align(chart, state) {
    var perSeries = chart.series.map(function (s) {
      var order = s.values.map(function (_, i) { return i; });
      var xs = order.map(function (i) { return xOf(chart, s, i, state.axis); });
      order.sort(function (a, b) { return xs[a] - xs[b] || a - b; });
      return { s: s, order: order, xs: xs };
    });
    var seen = new Map();
    perSeries.forEach(function (p) { p.order.forEach(function (i) { seen.set(p.xs[i], true); }); });
    var xs = Array.from(seen.keys()).sort(function (a, b) { return a - b; });
    var at = new Map();
    xs.forEach(function (x, i) { at.set(x, i); });
    var data = [xs], points = [], columns = [];
    perSeries.forEach(function (p) {
      var raw = new Array(xs.length).fill(null), index = new Int32Array(xs.length).fill(-1);
      var ordered = p.order.map(function (i) { return p.s.values[i]; });
      var shown = state.smoothing > 0 ? smooth(ordered, state.smoothing) : ordered;
      var smoothed = new Array(xs.length).fill(null);
      p.order.forEach(function (i, k) {
        var j = at.get(p.xs[i]);
        raw[j] = p.s.values[i];
        smoothed[j] = shown[k];
        index[j] = i;
      });
      if (state.log) {
        raw = raw.map(function (v) { return v !== null && v > 0 ? v : null; });
        smoothed = smoothed.map(function (v) { return v !== null && v > 0 ? v : null; });
      }
      points.push(index);
      if (state.smoothing > 0) { columns.push(raw); }
      columns.push(smoothed);
    });
    return { data: data.concat(columns), points: points };
  }

  function faint(colour) { return colour + "40"; }

  function Chart(page, chart, figure, state) {
    this.page = page;
    this.chart = chart;
    this.full = chart.series;
    this.figure = figure;
    this.state = state;
    this.hidden = new Set();
    this.plot = null;
    this.zoomed = null;
    this.box = el("div", { "class": "uplot-box" });
    this.legend = el("ul", { "class": "chart-legend" });
    this.tip = el("div", { "class": "chart-tip", "role": "status", "hidden": "" });
    var svg = figure.querySelector("svg");
    if (svg) { svg.setAttribute("hidden", ""); }
    figure.appendChild(this.box);
    figure.appendChild(this.legend);
    var self = this;
    // the page may have moved since the plot measured itself (charts above it were drawn)
    this.box.addEventListener("mouseenter", function () { if (self.plot) { self.plot.syncRect(); } });
    // a double-click on the plot resets the zoom: back to the whole history
    this.box.addEventListener("dblclick", function () { self.reset(); });
    this.buildLegend();
    this.draw();
  }

  Chart.prototype.perRun = function () { return this.state.smoothing > 0 ? 2 : 1; };

  Chart.prototype.buildLegend = function () {
    var self = this;
    this.chart.series.forEach(function (s) {
      var button = el("button", { "type": "button", "data-run": s.run, "aria-pressed": "true" });
      var swatch = el("span", { "class": "swatch" });
      swatch.style.background = s.colour;
      button.appendChild(swatch);
      button.appendChild(document.createTextNode(s.label));
      button.addEventListener("click", function () { self.toggle(s.run); });
      button.addEventListener("dblclick", function () { self.isolate(s.run); });
      var item = el("li");
      item.appendChild(button);
      self.legend.appendChild(item);
    });
  };

  Chart.prototype.toggle = function (run) {
    if (this.hidden.has(run)) { this.hidden.delete(run); } else { this.hidden.add(run); }
    this.applyVisibility();
  };

  Chart.prototype.isolate = function (run) {
    var others = this.chart.series.map(function (s) { return s.run; }).filter(function (r) {
      return r !== run;
    });
    var alone = others.every(function (r) { return this.hidden.has(r); }, this);
    this.hidden = alone ? new Set() : new Set(others);
    this.applyVisibility();
  };

  Chart.prototype.applyVisibility = function () {
    var self = this, per = this.perRun();
    this.chart.series.forEach(function (s, i) {
      var show = !self.hidden.has(s.run);
      for (var k = 0; k < per; k++) { self.plot.setSeries(1 + i * per + k, { show: show }); }
    });
    this.legend.querySelectorAll("button").forEach(function (b) {
      b.setAttribute("aria-pressed", self.hidden.has(b.getAttribute("data-run")) ? "false" : "true");
    });
    this.figure.setAttribute("data-hidden", Array.from(this.hidden).join(","));
  };

  Chart.prototype.options = function () {
    var self = this, state = this.state, chart = this.chart, per = this.perRun();
    var series = [{ label: state.axis }];
    chart.series.forEach(function (s) {
      var show = !self.hidden.has(s.run);
      if (per === 2) {
        series.push({ label: s.label + " (raw)", stroke: faint(s.colour), width: 1, show: show,
          spanGaps: true, points: { show: false } });
      }
      series.push({ label: s.label, stroke: s.colour, width: 1.5, show: show, spanGaps: true });
    });
    var width = Math.max(320, Math.min((this.figure.clientWidth || 660) - 12, 900));
    return {
      width: width,
      height: 260,
      series: series,
      legend: { show: false },
      focus: { alpha: 0.35 },
      cursor: { drag: { x: true, y: false, setScale: true }, focus: { prox: 24 } },
      scales: { x: { time: state.axis === "wall" }, y: { distr: state.log ? 3 : 1 } },
      axes: [{ label: this.xLabel() }, { label: chart.key, size: 60 }],
      hooks: {
        setCursor: [function (u) { self.showTip(u); }],
        setScale: [function (u, key) { if (key === "x") { self.scaled(u); } }],
        ready: [function (u) { u.over.appendChild(self.tip); }],
      },
    };
  };

  Chart.prototype.xLabel = function () {
    if (this.state.axis === "wall") { return "time"; }
    if (this.state.axis === "step" && this.chart.by === "step") { return "step"; }
    return "seconds since the start";
  };

  Chart.prototype.draw = function () {
    var aligned = align(this.chart, this.state);
    this.points = aligned.points;
    if (this.plot) { this.plot.destroy(); }
    this.drawing = true;
    this.plot = new uPlot(this.options(), aligned.data, this.box);
    this.drawing = false;
    this.full_x = [this.plot.scales.x.min, this.plot.scales.x.max];
    this.recordRange(this.plot);
    this.applyVisibility();
  };

  Chart.prototype.recordRange = function (u) {
    this.figure.setAttribute("data-x-min", String(u.scales.x.min));
    this.figure.setAttribute("data-x-max", String(u.scales.x.max));
  };

  /* A zoom (or its reset): finer points for the range when the history was cut down. */
  Chart.prototype.scaled = function (u) {
    this.recordRange(u);
    if (this.drawing) { return; }
    var min = u.scales.x.min, max = u.scales.x.max;
    var whole = this.full_x && min <= this.full_x[0] && max >= this.full_x[1];
    if (whole) {
      if (this.zoomed) { this.reset(); }
      return;
    }
    var alongSteps = this.chart.by === "step" && this.state.axis === "step";
    var alongTime = this.chart.by === "time" && this.state.axis === "wall";
    var sampled = this.full.some(function (s) { return s.sampled; });
    if (!sampled || !(alongSteps || alongTime)) { return; }
    var scale = alongTime ? 1000 : 1;
    this.fetchRange(Math.floor(min * scale), Math.ceil(max * scale));
  };

  Chart.prototype.fetchRange = function (start, end) {
    var self = this, wanted = start + ":" + end;
    this.zoomed = wanted;
    var query = new URLSearchParams({
      runs: this.full.map(function (s) { return s.run; }).join(","),
      key: this.chart.key, start: String(start), end: String(end),
      columns: String(this.page.columns),
    });
    fetch(this.page.url + "?" + query.toString(), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (found) {
        if (!found || self.zoomed !== wanted) { return; }
        var byRun = new Map(found.series.map(function (s) { return [s.run, s]; }));
        self.chart.series = self.full.map(function (s) {
          var finer = byRun.get(s.run);
          if (!finer) { return Object.assign({}, s, { steps: [], times: [], values: [] }); }
          return Object.assign({}, s, { steps: finer.steps, times: finer.times,
            values: finer.values });
        });
        self.redata();
        self.figure.setAttribute("data-refined", wanted);
      })
      .catch(function () { /* keep the coarser points */ });
  };

  Chart.prototype.reset = function () {
    this.zoomed = null;
    this.chart.series = this.full;
    var aligned = align(this.chart, this.state);
    this.points = aligned.points;
    this.drawing = true;
    this.plot.setData(aligned.data, true);
    this.drawing = false;
    this.recordRange(this.plot);
    this.figure.removeAttribute("data-refined");
  };

  Chart.prototype.redata = function () {
    var aligned = align(this.chart, this.state);
    this.points = aligned.points;
    this.drawing = true;
    this.plot.setData(aligned.data, false);
    this.drawing = false;
  };

  Chart.prototype.showTip = function (u) {
    var idx = u.cursor.idx, tip = this.tip;
    if (idx === null || idx === undefined || u.cursor.left < 0) {
      tip.setAttribute("hidden", "");
      return;
    }
    var self = this, per = this.perRun(), rows = [];
    this.chart.series.forEach(function (s, i) {
      if (self.hidden.has(s.run)) { return; }
      var index = self.points[i], j = nearest(index, idx);
      if (j < 0) { return; }
      var p = index[j], shown = u.data[1 + i * per + per - 1][j];
      var y = shown === null ? null : u.valToPos(shown, "y");
      rows.push({ s: s, p: p, shown: shown, distance: y === null ? 1e9 : Math.abs(y - u.cursor.top) });
    });
    rows.sort(function (a, b) { return a.distance - b.distance; });
    tip.textContent = "";
    rows.slice(0, TOOLTIP_ROWS).forEach(function (row) {
      var s = row.s, line = el("div", { "class": "tip-row", "data-run": s.run });
      var swatch = el("span", { "class": "swatch" });
      swatch.style.background = s.colour;
      line.appendChild(swatch);
      line.appendChild(el("strong", {}, s.label));
      var text = " step " + s.steps[row.p] + " · " + number(s.values[row.p]);
      if (self.state.smoothing > 0) { text += " (smoothed " + number(row.shown) + ")"; }
      text += " · " + isoTime(s.times[row.p]);
      line.appendChild(document.createTextNode(text));
      tip.appendChild(line);
    });
    if (rows.length > TOOLTIP_ROWS) {
      tip.appendChild(el("div", { "class": "tip-more" }, "+" + (rows.length - TOOLTIP_ROWS) + " more"));
    }
    if (!rows.length) { tip.setAttribute("hidden", ""); return; }
    tip.removeAttribute("hidden");
    var left = u.cursor.left + 12, room = u.over.clientWidth - tip.offsetWidth - 4;
    tip.style.left = Math.max(0, Math.min(left, room)) + "px";
    tip.style.top = Math.max(0, u.cursor.top + 12) + "px";
  };

  /* The index nearest to idx where the series has a point, or -1. */
  function nearest(index, idx) {
    if (index[idx] >= 0) { return idx; }
    for (var d = 1; d < index.length; d++) {
      if (idx - d >= 0 && index[idx - d] >= 0) { return idx - d; }
      if (idx + d < index.length && index[idx + d] >= 0) { return idx + d; }
      if (idx - d < 0 && idx + d >= index.length) { break; }
    }
    return -1;
  }

  function toolbar(state, redraw, byTimeOnly) {
    var bar = el("form", { "class": "chart-controls", "id": "chart-controls" });
    bar.addEventListener("submit", function (e) { e.preventDefault(); });
    var axis = el("select", { "name": "axis", "id": "chart-axis" });
    [["step", "step"], ["wall", "wall time"], ["relative", "relative time"]].forEach(function (o) {
      var option = el("option", { "value": o[0] }, o[1]);
      if (o[0] === state.axis) { option.setAttribute("selected", ""); }
      axis.appendChild(option);
    });
    var axisLabel = el("label", {}, "x axis ");
    axisLabel.appendChild(axis);
    var log = el("input", { "type": "checkbox", "name": "log", "id": "chart-log" });
    var logLabel = el("label", {});
    logLabel.appendChild(log);
    logLabel.appendChild(document.createTextNode(" log scale"));
    var smoothing = el("input", { "type": "range", "name": "smoothing", "id": "chart-smoothing",
      "min": "0", "max": "0.99", "step": "0.01", "value": "0" });
    var shown = el("output", { "for": "chart-smoothing" }, "0");
    var smoothLabel = el("label", {}, "smoothing ");
    smoothLabel.appendChild(smoothing);
    smoothLabel.appendChild(shown);
    axis.addEventListener("change", function () { state.axis = axis.value; redraw(); });
    log.addEventListener("change", function () { state.log = log.checked; redraw(); });
    smoothing.addEventListener("input", function () {
      state.smoothing = parseFloat(smoothing.value) || 0;
      shown.textContent = smoothing.value;
      redraw();
    });
    bar.appendChild(axisLabel);
    bar.appendChild(logLabel);
    bar.appendChild(smoothLabel);
    bar.appendChild(el("span", { "class": "hint" },
      "drag to zoom · double-click to reset · click a legend entry to hide it, double-click to show it alone"));
    if (byTimeOnly) { axis.value = "relative"; }
    return bar;
  }

  function start() {
    var block = document.getElementById("chart-data");
    if (!block || typeof uPlot === "undefined") { return; }
    var page = JSON.parse(block.textContent);
    var figures = document.querySelectorAll("figure[data-chart]");
    if (!figures.length || !page.charts.length) { return; }
    var byTimeOnly = page.charts.every(function (c) { return c.by === "time"; });
    var state = { axis: byTimeOnly ? "relative" : "step", log: false, smoothing: 0 };
    var made = [];
    var redraw = function () { made.forEach(function (c) { c.zoomed = null; c.chart.series = c.full; c.draw(); }); };
    var holder = figures[0].parentNode;
    holder.parentNode.insertBefore(toolbar(state, redraw, byTimeOnly), holder);
    figures.forEach(function (figure) {
      var chart = page.charts[parseInt(figure.getAttribute("data-chart"), 10)];
      if (chart) { made.push(new Chart(page, chart, figure, state)); }
    });
    document.body.setAttribute("data-charts-ready", String(made.length));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
