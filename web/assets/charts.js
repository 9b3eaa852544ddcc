// Small SVG charts drawn by hand: no library, nothing fetched.
//
// `OneFlowCharts.draw(svg, points, opts)` draws bars or a line of
// `points = [{t: ms, v: number, label: string}]` into an <svg> element, with
// a time axis, a value axis and a <title> per point for hover text.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600;
  const H = 220;
  const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function timeLabel(ms, stepMs) {
    const d = new Date(ms);
    const hh = String(d.getHours()).padStart(2, "0");
    const mm = String(d.getMinutes()).padStart(2, "0");
    if (stepMs >= 86400000) return `${d.getMonth() + 1}/${d.getDate()}`;
    return `${hh}:${mm}`;
  }

  // opts: {kind: "bar" | "line", step: bucket ms, axis: v => text,
  //        from, to: time domain in ms (default: the points'),
  //        empty: text shown without data}
  function draw(svg, points, opts) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("data-points", String(points.length));
    svg.setAttribute("data-total", String(points.reduce((a, p) => a + p.v, 0)));
    const axis = opts.axis || ((v) => String(v));
    if (points.length === 0) {
      svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" },
        opts.empty || "no data yet"));
      return;
    }
    const step = opts.step || 60000;
    // The time domain may be given, so charts of sparse series line up.
    const t0 = opts.from ?? points[0].t;
    const t1 = opts.to ?? points[points.length - 1].t + step;
    const max = Math.max(...points.map((p) => p.v), 0) || 1;
    const iw = W - PAD.left - PAD.right;
    const ih = H - PAD.top - PAD.bottom;
    const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * iw;
    const y = (v) => PAD.top + ih - (v / max) * ih;

    // Grid and value axis: 0, half, max.
    for (const f of [0, 0.5, 1]) {
      const gy = y(max * f);
      svg.appendChild(el("line", { x1: PAD.left, x2: W - PAD.right, y1: gy, y2: gy, class: "chart-grid" }));
      svg.appendChild(el("text", { x: PAD.left - 6, y: gy + 4, "text-anchor": "end", class: "chart-axis" },
        axis(max * f, f)));
    }
    const bw = Math.max(2, (iw / ((t1 - t0) / step)) * 0.8);
    // Time axis: first and last bucket, and one in the middle.
    const ticks = [t0, t0 + (t1 - t0) / 2, t1 - step];
    for (const t of ticks) {
      svg.appendChild(el("text", { x: x(t) + bw / 2, y: H - 8, "text-anchor": "middle", class: "chart-axis" },
        timeLabel(t, step)));
    }

    if (opts.kind === "bar") {
      for (const p of points.filter((p) => p.v > 0)) {
        const r = el("rect", {
          x: x(p.t) + 1, y: y(p.v), width: bw, height: Math.max(1, PAD.top + ih - y(p.v)),
          class: "chart-bar",
        });
        r.appendChild(el("title", {}, `${timeLabel(p.t, step)}: ${p.label}`));
        svg.appendChild(r);
      }
    } else {
      const d = points.map((p, i) => `${i ? "L" : "M"}${(x(p.t) + bw / 2).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
      svg.appendChild(el("path", { d, class: "chart-line" }));
      for (const p of points) {
        const c = el("circle", { cx: x(p.t) + bw / 2, cy: y(p.v), r: 3.5, class: "chart-dot" });
        c.appendChild(el("title", {}, `${timeLabel(p.t, step)}: ${p.label}`));
        svg.appendChild(c);
      }
    }
  }

  window.OneFlowCharts = { draw };
})();
