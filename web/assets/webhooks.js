// The webhook panel (docs/webhooks.md): the webhooks of the account on
// view and, for the one chosen, its delivery log: each event's status,
// attempts, the last answer or error and when the next attempt is due, so a
// receiver that is down shows here before anyone wonders where events went.
"use strict";

(function () {
  const { api } = window.OneFlowSession;
  const { $, row, fillBody, button, when } = window.OneFlowUi;

  const w = { chosen: null, hooks: [] };

  // `subject`: the user an admin is looking at ("" for the caller, which
  // for an admin lists everyone's).
  async function refresh(subject) {
    const q = subject ? `?user_id=${encodeURIComponent(subject)}` : "";
    const data = await api("GET", `/api/webhooks${q}`);
    w.hooks = data.webhooks;
    if (!w.hooks.some((h) => h.id === w.chosen)) w.chosen = w.hooks.length ? w.hooks[0].id : null;
    renderHooks();
    if (!w.chosen) {
      $("deliveries-of").textContent = "";
      fillBody($("deliveries-table"), [], "choose a webhook", 8);
      return;
    }
    await loadLog();
  }

  function renderHooks() {
    const rows = w.hooks.map((h) => {
      const show = button("Deliveries", () => {
        w.chosen = h.id;
        renderHooks();
        loadLog().catch((e) => { $("deliveries-of").textContent = e.message; });
      });
      show.disabled = h.id === w.chosen;
      const tr = row([h.id, h.url, h.events.join(", "), h.user_id, when(h.created_at), show],
        { "data-webhook-id": h.id });
      if (h.id === w.chosen) tr.className = "chosen";
      return tr;
    });
    fillBody($("webhooks-table"), rows, "no webhooks (POST /api/webhooks makes one)", 6);
  }

  async function loadLog() {
    const id = w.chosen;
    const log = await api("GET", `/api/webhooks/${encodeURIComponent(id)}/deliveries`);
    if (w.chosen === id) renderDeliveries(log.deliveries);
  }

  function renderDeliveries(items) {
    $("deliveries-of").textContent = `of ${w.chosen}, newest first`;
    const rows = items.map((d) => {
      const answer = d.last_status !== undefined ? `HTTP ${d.last_status}` : "";
      const tr = row([
        when(d.created_at), d.event, d.status, d.attempts,
        [answer, d.last_error || ""].filter(Boolean).join(" · "),
        when(d.last_attempt_at), when(d.next_attempt_at), d.id,
      ], { "data-delivery-id": d.id, "data-status": d.status });
      tr.cells[2].className = d.status === "delivered" ? "ok" : d.status === "failed" ? "bad" : "";
      tr.cells[4].className = "wrap"; // errors are long; wrap, not scroll
      return tr;
    });
    fillBody($("deliveries-table"), rows, "no deliveries yet", 8);
  }

  function clear() {
    w.chosen = null;
    w.hooks = [];
    for (const id of ["webhooks-table", "deliveries-table"]) $(id).tBodies[0].replaceChildren();
    $("deliveries-of").textContent = "";
  }

  window.OneFlowWebhooks = { refresh, clear };
})();
