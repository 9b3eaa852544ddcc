// Saved dashboards (docs/dashboard.md): the dashboards of the account or
// team on view, one opened with its panels drawn, a form to make, change
// or delete one, and each panel's export as PNG (drawn on a canvas from the
// panel's data) and CSV (the server's own CSV of the panel).
//
// The section's markup is made here; index.html only holds its place.
"use strict";

(function () {
  const { api, text } = window.OneFlowSession;
  const { $, button, setMsg } = window.OneFlowUi;
  const charts = window.OneFlowCharts;
  const money = window.OneFlowMoney;

  const METRICS = ["requests", "successes", "failures", "success_rate", "cost", "input_tokens",
    "output_tokens", "mean_latency_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"];
  const GROUPS = ["provider", "model", "key", "member"];
  const WINDOWS = ["1h", "24h", "7d", "30d", "90d", "range"];
  const BUCKETS = ["", "minute", "hour", "day"];
  const CHARTS = ["line", "bar", "area", "table"];
  const BUCKET_MS = { minute: 60000, hour: 3600000, day: 86400000 };
  // Charts drawn per panel on the page (the biggest groups); the PNG and
  // the CSV hold every group.
  const SHOWN_GROUPS = 4;
  // How often the list and the open dashboard are read again while on view.
  const RELOAD_MS = 30000;
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

  const d = { owner: null, list: [], open: null, loadedAt: 0 };

  function el(tag, attrs, kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids || []) e.appendChild(k);
    return e;
  }

  function select(options, value, attrs) {
    const s = el("select", attrs);
    for (const o of options) s.appendChild(el("option", { value: o, text: o || "default" }));
    s.value = value === undefined || value === null ? options[0] : value;
    return s;
  }

  function withId(e, id) {
    e.id = id;
    return e;
  }

  function withOwner(path) {
    if (!d.owner) return path;
    return path + (path.includes("?") ? "&" : "?") + "user_id=" + encodeURIComponent(d.owner);
  }

  const enc = encodeURIComponent;

  // ---- the section ---------------------------------------------------------

  function build() {
    const root = $("dashboards-panel");
    if (!root || root.dataset.built) return;
    root.dataset.built = "1";
    root.replaceChildren(
      el("h2", { text: "Dashboards" }),
      el("div", { class: "row" }, [
        el("label", { text: "Saved " }, [select([""], "", { id: "dash-list" })]),
        el("div", { class: "buttons" }, [
          withId(button("Open", () => openChosen(), "secondary"), "dash-open"),
          withId(button("Edit", () => editChosen(), "secondary"), "dash-edit"),
          withId(button("Delete", () => deleteChosen(), "secondary"), "dash-delete"),
          withId(button("New", () => edit(null), "secondary"), "dash-new"),
        ]),
      ]),
      el("p", { id: "dash-msg", class: "msg", role: "status" }),
      el("form", { id: "dash-form", hidden: "" }, [
        el("div", { class: "row" }, [
          el("label", { text: "Name " }, [el("input", { id: "dash-name", required: "", pattern: "[a-z0-9][a-z0-9_\\-]{0,63}", placeholder: "spend" })]),
          el("label", { text: "Title " }, [el("input", { id: "dash-title", required: "", maxlength: "200" })]),
        ]),
        el("div", { id: "dash-panels" }),
        el("div", { class: "buttons" }, [
          button("Add panel", () => addPanelRow({}), "secondary"),
          el("button", { type: "submit", id: "dash-save", text: "Save dashboard" }),
          button("Cancel", () => { $("dash-form").hidden = true; }, "secondary"),
        ]),
      ]),
      el("div", { id: "dash-view" }),
    );
    $("dash-form").addEventListener("submit", (ev) => { ev.preventDefault(); save(); });
  }

  // ---- list, open ----------------------------------------------------------

  // `owner`: a team's id, or the user on view ("" for the caller's own).
  async function refresh(owner) {
    build();
    const changed = owner !== d.owner;
    if (!changed && Date.now() - d.loadedAt < RELOAD_MS) return;
    d.owner = owner;
    d.loadedAt = Date.now();
    if (changed) {
      d.open = null;
      $("dash-view").replaceChildren();
      $("dash-form").hidden = true;
    }
    const r = await api("GET", withOwner("/api/dashboards"));
    d.list = r.dashboards;
    const s = $("dash-list");
    const keep = s.value;
    s.replaceChildren(...(d.list.length
      ? d.list.map((x) => el("option", { value: x.name, text: `${x.title} (${x.name})` }))
      : [el("option", { value: "", text: "none saved yet" })]));
    if (d.list.some((x) => x.name === keep)) s.value = keep;
    if (d.open && d.list.some((x) => x.name === d.open)) await show(d.open);
  }

  function chosen() {
    return d.list.find((x) => x.name === $("dash-list").value) || null;
  }

  function openChosen() {
    const x = chosen();
    if (x) show(x.name).catch((e) => setMsg($("dash-msg"), e.message, true));
  }

  async function show(name) {
    const dash = await api("GET", withOwner(`/api/dashboards/${enc(name)}`));
    d.open = name;
    const view = $("dash-view");
    const figs = dash.panels.map((p, i) => el("figure", {
      class: "dash-panel", "data-panel-index": String(i), "data-chart": p.chart,
    }, [el("figcaption", { text: p.title || `${p.metric} by ${p.group_by}, ${p.window}` })]));
    view.replaceChildren(el("h3", { id: "dash-open-title", text: dash.title, "data-name": name }), ...figs);
    await Promise.all(figs.map((f, i) => drawPanel(name, i, f)));
  }

  function label(metric, v) {
    if (v === null || v === undefined) return "—";
    if (metric === "cost") return money.format(v);
    if (metric === "success_rate") return `${(v * 100).toFixed(1)}%`;
    return String(v);
  }

  async function drawPanel(name, i, fig) {
    const data = await api("GET", withOwner(`/api/dashboards/${enc(name)}/panels/${i}`));
    fig.dataset.groups = String(data.groups.length);
    const body = el("div", { class: "dash-body" });
    if (data.groups.length === 0) {
      body.appendChild(el("p", { class: "muted", text: "no requests in this window" }));
    } else if (data.chart === "table") {
      const rows = data.groups.map((g) => el("tr", { "data-group": g.group }, [
        el("td", { text: g.group }), el("td", { text: label(data.metric, g.total) }),
      ]));
      body.appendChild(el("table", {}, [
        el("thead", {}, [el("tr", {}, [el("th", { text: data.group_by }), el("th", { text: data.metric })])]),
        el("tbody", {}, rows),
      ]));
    } else {
      for (const g of data.groups.slice(0, SHOWN_GROUPS)) {
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("class", "chart");
        svg.setAttribute("role", "img");
        svg.setAttribute("data-group", g.group);
        svg.setAttribute("aria-label", `${data.metric} of ${g.group}`);
        const points = g.points.map((p) => ({ t: p.start, v: Number(p.value || 0), label: label(data.metric, p.value) }));
        charts.draw(svg, points, {
          kind: data.chart === "bar" ? "bar" : "line",
          step: BUCKET_MS[data.bucket],
          from: data.from,
          to: data.to,
          axis: (v) => label(data.metric, data.metric === "cost" ? Number(v.toFixed(6)) : Math.round(v * 100) / 100),
        });
        body.appendChild(el("div", { class: "dash-group" }, [
          el("div", { class: "small", text: `${g.group}: ${label(data.metric, g.total)}` }), svg,
        ]));
      }
      if (data.groups.length > SHOWN_GROUPS) {
        body.appendChild(el("p", { class: "muted small", text: `${data.groups.length - SHOWN_GROUPS} more groups in the exports` }));
      }
    }
    const png = el("a", { class: "dash-png", hidden: "", download: `${name}-panel-${i}.png`, text: "PNG file" });
    const csv = el("a", { class: "dash-csv", hidden: "", download: `${name}-panel-${i}.csv`, text: "CSV file" });
    const tools = el("div", { class: "buttons" }, [
      button("Export PNG", () => exportPng(data, png), "secondary small dash-png-btn"),
      button("Export CSV", () => exportCsv(name, i, csv).catch((e) => setMsg($("dash-msg"), e.message, true)), "secondary small dash-csv-btn"),
      png, csv,
    ]);
    fig.replaceChildren(fig.firstChild, body, tools);
  }

  // ---- exports -------------------------------------------------------------

  // Draws the panel on a canvas (every group, one colour each, with a
  // legend) and offers it as a PNG.
  function exportPng(data, link) {
    const W = 960;
    const H = 480;
    const pad = { l: 70, r: 200, t: 40, b: 40 };
    const c = document.createElement("canvas");
    c.width = W;
    c.height = H;
    const g = c.getContext("2d");
    g.fillStyle = "#ffffff";
    g.fillRect(0, 0, W, H);
    g.fillStyle = "#111827";
    g.font = "16px sans-serif";
    g.fillText(`${data.metric} by ${data.group_by} (${data.bucket})`, pad.l, 24);
    g.font = "12px sans-serif";
    if (data.chart === "table") {
      data.groups.forEach((gr, k) => {
        g.fillText(gr.group, pad.l, pad.t + 20 + k * 18);
        g.fillText(label(data.metric, gr.total), pad.l + 400, pad.t + 20 + k * 18);
      });
    } else {
      const step = BUCKET_MS[data.bucket];
      const max = Math.max(1e-9, ...data.groups.flatMap((gr) => gr.points.map((p) => Number(p.value || 0))));
      const iw = W - pad.l - pad.r;
      const ih = H - pad.t - pad.b;
      const x = (t) => pad.l + ((t - data.from) / (data.to - data.from)) * iw;
      const y = (v) => pad.t + ih - (v / max) * ih;
      g.strokeStyle = "#d1d5db";
      g.beginPath();
      g.moveTo(pad.l, pad.t);
      g.lineTo(pad.l, pad.t + ih);
      g.lineTo(pad.l + iw, pad.t + ih);
      g.stroke();
      g.fillText(label(data.metric, max), 4, pad.t + 4);
      g.fillText("0", pad.l - 14, pad.t + ih);
      g.fillText(new Date(data.from).toISOString().slice(0, 16), pad.l, H - 12);
      g.fillText(new Date(data.to).toISOString().slice(0, 16), pad.l + iw - 100, H - 12);
      const n = data.groups.length || 1;
      const bw = (iw * step) / (data.to - data.from) / n;
      data.groups.forEach((gr, k) => {
        const colour = PALETTE[k % PALETTE.length];
        g.strokeStyle = colour;
        g.fillStyle = colour;
        if (data.chart === "bar") {
          for (const p of gr.points) {
            const v = Number(p.value || 0);
            if (v > 0) g.fillRect(x(p.start) + k * bw, y(v), Math.max(1, bw - 1), pad.t + ih - y(v));
          }
        } else {
          g.beginPath();
          gr.points.forEach((p, j) => {
            const px = x(p.start + step / 2);
            const py = y(Number(p.value || 0));
            if (j) g.lineTo(px, py); else g.moveTo(px, py);
          });
          g.stroke();
          if (data.chart === "area" && gr.points.length) {
            g.lineTo(x(gr.points[gr.points.length - 1].start + step / 2), pad.t + ih);
            g.lineTo(x(gr.points[0].start + step / 2), pad.t + ih);
            g.closePath();
            g.globalAlpha = 0.2;
            g.fill();
            g.globalAlpha = 1;
          }
        }
        g.fillRect(W - pad.r + 16, pad.t + k * 18, 10, 10);
        g.fillStyle = "#111827";
        g.fillText(`${gr.group}: ${label(data.metric, gr.total)}`, W - pad.r + 32, pad.t + 9 + k * 18);
      });
    }
    link.href = c.toDataURL("image/png");
    link.hidden = false;
    link.click();
  }

  async function exportCsv(name, i, link) {
    const csv = await text(withOwner(`/api/dashboards/${enc(name)}/panels/${i}?format=csv`));
    link.href = "data:text/csv;charset=utf-8," + encodeURIComponent(csv);
    link.hidden = false;
    link.click();
  }

  // ---- the form ------------------------------------------------------------

  function addPanelRow(p) {
    const rowEl = el("div", { class: "row dash-panel-row" }, [
      el("label", { text: "Title " }, [el("input", { "data-f": "title", maxlength: "200", value: p.title || "" })]),
      el("label", { text: "Metric " }, [select(METRICS, p.metric, { "data-f": "metric" })]),
      el("label", { text: "By " }, [select(GROUPS, p.group_by, { "data-f": "group_by" })]),
      el("label", { text: "Window " }, [select(WINDOWS, p.window || "24h", { "data-f": "window" })]),
      el("label", { text: "From " }, [el("input", { "data-f": "from", type: "datetime-local" })]),
      el("label", { text: "To " }, [el("input", { "data-f": "to", type: "datetime-local" })]),
      el("label", { text: "Bucket " }, [select(BUCKETS, p.bucket || "", { "data-f": "bucket" })]),
      el("label", { text: "Chart " }, [select(CHARTS, p.chart, { "data-f": "chart" })]),
    ]);
    const f = (k) => rowEl.querySelector(`[data-f="${k}"]`);
    const local = (ms) => (ms === undefined ? "" : new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 16));
    f("from").value = local(p.from);
    f("to").value = local(p.to);
    const ranged = () => {
      const on = f("window").value === "range";
      f("from").parentElement.hidden = !on;
      f("to").parentElement.hidden = !on;
    };
    f("window").addEventListener("change", ranged);
    ranged();
    rowEl.appendChild(button("Remove", () => rowEl.remove()));
    $("dash-panels").appendChild(rowEl);
  }

  function edit(x) {
    setMsg($("dash-msg"), "");
    $("dash-form").hidden = false;
    $("dash-name").value = x ? x.name : "";
    $("dash-name").readOnly = !!x;
    $("dash-title").value = x ? x.title : "";
    $("dash-panels").replaceChildren();
    for (const p of x ? x.panels : [{ metric: "requests", group_by: "provider", window: "24h", chart: "line" }]) addPanelRow(p);
  }

  function editChosen() {
    const x = chosen();
    if (x) edit(x);
  }

  function readForm() {
    const panels = [...document.querySelectorAll("#dash-panels .dash-panel-row")].map((r) => {
      const f = (k) => r.querySelector(`[data-f="${k}"]`).value;
      const p = { metric: f("metric"), group_by: f("group_by"), window: f("window"), chart: f("chart") };
      if (f("title").trim()) p.title = f("title").trim();
      if (f("bucket")) p.bucket = f("bucket");
      if (p.window === "range") {
        p.from = new Date(f("from")).getTime();
        p.to = new Date(f("to")).getTime();
      }
      return p;
    });
    return { title: $("dash-title").value.trim(), panels };
  }

  async function save() {
    const name = $("dash-name").value.trim();
    try {
      await api("PUT", withOwner(`/api/dashboards/${enc(name)}`), readForm());
      $("dash-form").hidden = true;
      setMsg($("dash-msg"), `Saved ${name}.`);
      d.loadedAt = 0;
      d.open = name;
      // Re-reads the list and draws the saved one (it is `d.open`).
      await refresh(d.owner);
      $("dash-list").value = name;
    } catch (e) {
      setMsg($("dash-msg"), e.message, true);
    }
  }

  async function deleteChosen() {
    const x = chosen();
    if (!x || !window.confirm(`Delete the dashboard ${x.name}?`)) return;
    try {
      await api("DELETE", withOwner(`/api/dashboards/${enc(x.name)}`));
      setMsg($("dash-msg"), `Deleted ${x.name}.`);
      if (d.open === x.name) {
        d.open = null;
        $("dash-view").replaceChildren();
      }
      d.loadedAt = 0;
      await refresh(d.owner);
    } catch (e) {
      setMsg($("dash-msg"), e.message, true);
    }
  }

  function clear() {
    d.owner = null;
    d.list = [];
    d.open = null;
    d.loadedAt = 0;
    const root = $("dashboards-panel");
    if (root && root.dataset.built) {
      $("dash-view").replaceChildren();
      $("dash-list").replaceChildren();
      $("dash-form").hidden = true;
    }
  }

  window.OneFlowDashboards = { refresh, clear, show };
})();
