// The experiments panel (docs/experiments.md), for admins: every A/B
// experiment with its state and, for the one chosen, each variant's
// figures and the verdicts against the first variant, with buttons to stop
// it, promote a variant, or remove the pin a promotion left.
"use strict";

(function () {
  const { api } = window.OneFlowSession;
  const { $, row, fillBody, button, when, pct, setMsg } = window.OneFlowUi;

  const x = { chosen: null, list: [], pins: [] };

  async function act(method, path, body) {
    try {
      await api(method, path, body);
      setMsg($("experiments-msg"), "");
      await refresh();
    } catch (e) {
      setMsg($("experiments-msg"), e.message, true);
    }
  }

  async function refresh() {
    const data = await api("GET", "/api/experiments");
    x.list = data.experiments;
    x.pins = data.pins;
    if (!x.list.some((e) => e.id === x.chosen)) x.chosen = x.list.length ? x.list[0].id : null;
    renderList();
    if (x.chosen) await loadFigures(x.chosen);
    else fillBody($("variants-table"), [], "choose an experiment", 11);
  }

  function renderList() {
    const rows = x.list.map((e) => {
      const show = button("Figures", () => {
        x.chosen = e.id;
        renderList();
        loadFigures(e.id).catch((err) => setMsg($("experiments-msg"), err.message, true));
      });
      const cells = [e.id, e.model, e.state + (e.promoted ? ` (${e.promoted})` : ""),
        e.variants.map((v) => `${v.name}: ${v.provider} × ${v.weight}`).join(", "),
        e.sticky, when(e.created_at), show];
      if (e.state === "running") {
        cells.push(button("Stop", () => act("POST", `/api/experiments/${e.id}/stop`, {})));
      } else if (x.pins.some((p) => p.experiment === e.id)) {
        cells.push(button("Remove pin", () => act("DELETE", `/api/experiments/${e.id}/promotion`)));
      } else {
        cells.push("");
      }
      const tr = row(cells, { "data-experiment-id": e.id });
      if (e.id === x.chosen) tr.className = "chosen";
      return tr;
    });
    fillBody($("experiments-table"), rows, "no experiments (POST /api/experiments starts one)", 8);
  }

  async function loadFigures(id) {
    const rep = await api("GET", `/api/experiments/${encodeURIComponent(id)}`);
    if (x.chosen !== id) return;
    $("experiment-of").textContent = `${rep.id} · ${rep.model}`;
    const running = rep.state === "running";
    const rows = rep.figures.variants.map((v) => row([
      v.name, v.provider, v.weight, v.requests, pct(v.success_rate),
      v.latency_p50_ms ?? "", v.latency_p95_ms ?? "", v.cost_per_request,
      `${v.input_tokens} / ${v.output_tokens}`,
      v.ratings ? `${v.rating_mean.toFixed(2)} (${v.ratings}, ${v.positive_ratings} positive)` : "",
      running ? button("Promote", () => act("POST", `/api/experiments/${id}/promote`, { variant: v.name })) : "",
    ], { "data-variant": v.name }));
    fillBody($("variants-table"), rows, "no variants", 11);
    const verdicts = rep.figures.comparisons.map((c) => {
      const li = document.createElement("li");
      li.textContent = `${c.metric.replaceAll("_", " ")}: ${c.verdict}`;
      if (c.significant) li.className = "significant";
      return li;
    });
    $("verdicts").replaceChildren(...verdicts);
  }

  function clear() {
    x.chosen = null;
    x.list = [];
    for (const t of ["experiments-table", "variants-table"]) $(t).tBodies[0].replaceChildren();
    $("verdicts").replaceChildren();
  }

  window.OneFlowExperiments = { refresh, clear };
})();
