// The reconciliation panel (docs/reconcile.md), for admins: upload a
// provider's usage export, read the drift table cell by cell, download it
// as CSV, and open the reports kept before.
"use strict";

(function () {
  const { api } = window.OneFlowSession;
  const { $, row, fillBody, button, setMsg, when } = window.OneFlowUi;

  const r = { shown: null, admin: false };
  const COLUMNS = 10;

  function figure(f) {
    if (f.theirs === undefined || f.theirs === null) return `${f.ours} / —`;
    return `${f.ours} / ${f.theirs}`;
  }

  function pct(x) {
    return typeof x === "number" ? `${(x * 100).toFixed(2)}%` : "";
  }

  function renderReport(report) {
    r.shown = report;
    const t = report.totals;
    const basis = Object.entries(report.providers).map(([p, b]) => `${p}: ${b}`).join(", ");
    $("rc-summary").textContent =
      `${report.id} · ${report.format} · ${report.from_day || "—"} to ${report.to_day || "—"} · ` +
      `${t.cells} cells: ${t.matched} match, ${t.drifted} drift, ${t.only_ours} only ours, ` +
      `${t.only_theirs} only theirs · cost ours ${t.ours_cost}, theirs ${t.theirs_cost} · priced by ${basis}`;
    const rows = report.cells.map((c) => {
      const tr = row([
        c.day, c.provider, c.model, c.status, c.requests,
        figure(c.input_tokens), figure(c.output_tokens), figure(c.cost),
        c.cost.drift === undefined || c.cost.drift === null ? "" : String(c.cost.drift),
        pct(c.cost.relative),
      ], { "data-cell": `${c.day} ${c.provider} ${c.model}`, "data-status": c.status });
      tr.cells[3].className = c.status === "match" ? "ok" : "bad";
      return tr;
    });
    fillBody($("rc-cells"), rows, "no cells: the export was empty", COLUMNS);
    $("rc-download").disabled = false;
  }

  async function refreshList() {
    const reports = await api("GET", "/api/reconcile");
    const rows = reports.map((s) => {
      const open = button("Open", () => {
        api("GET", `/api/reconcile/${encodeURIComponent(s.id)}`)
          .then(renderReport)
          .catch((e) => setMsg($("rc-msg"), e.message, true));
      });
      return row([
        when(s.created_at), Object.keys(s.providers).join(", "), s.format,
        `${s.from_day || ""} – ${s.to_day || ""}`, s.totals.matched, s.totals.drifted,
        s.totals.only_ours + s.totals.only_theirs, open,
      ], { "data-report-id": s.id });
    });
    fillBody($("rc-reports"), rows, "no reports yet", 8);
  }

  async function upload(ev) {
    ev.preventDefault();
    const file = $("rc-file").files[0];
    if (!file) {
      setMsg($("rc-msg"), "choose the export file", true);
      return;
    }
    const q = new URLSearchParams();
    for (const [param, id] of [["provider", "rc-provider"], ["format", "rc-format"],
      ["tokens_tolerance", "rc-tokens"], ["cost_tolerance", "rc-cost"]]) {
      const v = $(id).value.trim();
      if (v) q.set(param, v);
    }
    setMsg($("rc-msg"), "comparing…");
    try {
      // The file goes as it is: the server tells its format from its text.
      const report = await api("POST", `/api/reconcile?${q}`, file);
      renderReport(report);
      setMsg($("rc-msg"), `kept as ${report.id}`);
      await refreshList();
    } catch (e) {
      setMsg($("rc-msg"), e.message, true);
    }
  }

  async function download() {
    if (!r.shown) return;
    try {
      const csv = await api("GET", `/api/reconcile/${encodeURIComponent(r.shown.id)}?format=csv`);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
      a.download = `${r.shown.id}.csv`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    } catch (e) {
      setMsg($("rc-msg"), e.message, true);
    }
  }

  // Shown to admins only; the providers to choose from are the configured ones.
  async function enter(admin) {
    r.admin = admin;
    $("reconcile-panel").hidden = !admin;
    if (!admin) return;
    const data = await api("GET", "/api/providers");
    const names = data.providers.map((p) => p.name);
    const sel = $("rc-provider");
    sel.replaceChildren(...["", ...names].map((n) => {
      const o = document.createElement("option");
      o.value = n;
      o.textContent = n || "(from the CSV's provider column)";
      return o;
    }));
    if (names.length) sel.value = names[0];
    await refreshList();
  }

  function clear() {
    r.shown = null;
    r.admin = false;
    $("reconcile-panel").hidden = true;
    for (const id of ["rc-cells", "rc-reports"]) $(id).tBodies[0].replaceChildren();
    $("rc-summary").textContent = "";
    $("rc-download").disabled = true;
    $("rc-form").reset();
    setMsg($("rc-msg"), "");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("rc-form").addEventListener("submit", upload);
    $("rc-download").addEventListener("click", download);
  });

  window.OneFlowReconcile = { enter, clear };
})();
