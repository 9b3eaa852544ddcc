// Budget windows and the budget form, for whichever wallet is on view: the
// person's own (`/api/budget`) or a team's (`/api/teams/{id}/wallet`),
// which answer in the same shape.
"use strict";

(function () {
  const money = window.OneFlowMoney;
  const { $, when } = window.OneFlowUi;
  const fmt = money.format;
  const DAY = 86400000;
  const WINDOWS = ["daily", "weekly", "monthly"];

  function windowStart(name, resetsAt) {
    if (name === "daily") return resetsAt - DAY;
    if (name === "weekly") return resetsAt - 7 * DAY;
    const d = new Date(resetsAt);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1);
  }

  // One window: what it says, a burn-down bar, and when it runs out.
  function windowView(w, now) {
    const start = windowStart(w.window, w.resets_at);
    const elapsed = Math.max(1, now - start);
    const used = w.spent + w.held;
    const rate = Number(w.spent) / elapsed; // micro-credits per ms, for projections only
    const div = document.createElement("div");
    div.className = "budget";
    div.dataset.window = w.window;
    const label = document.createElement("div");
    const limitText = w.limit === null ? "no limit" : `limit ${fmt(w.limit)}`;
    label.textContent = `${w.window}: spent ${fmt(w.spent)}, held ${fmt(w.held)}, ${limitText}` +
      (w.remaining !== null ? `, remaining ${fmt(w.remaining)}` : "");
    div.appendChild(label);
    if (w.limit !== null) {
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.className = "fill";
      const frac = w.limit > 0n ? Math.min(1, Number(used) / Number(w.limit)) : 1;
      fill.style.width = `${(frac * 100).toFixed(1)}%`;
      if (frac >= 0.9) fill.classList.add("hot");
      bar.appendChild(fill);
      div.appendChild(bar);
      const note = document.createElement("div");
      note.className = "muted small";
      const left = w.limit - used;
      if (left <= 0n) {
        note.textContent = `exhausted; resets ${when(w.resets_at)}`;
      } else if (rate > 0) {
        const out = now + Number(left) / rate;
        note.textContent = out < w.resets_at
          ? `at the current rate it runs out ${when(out)} (resets ${when(w.resets_at)})`
          : `at the current rate it lasts until it resets ${when(w.resets_at)}`;
      } else {
        note.textContent = `nothing spent yet; resets ${when(w.resets_at)}`;
      }
      div.appendChild(note);
    }
    return { div, rate };
  }

  // Shows a wallet's windows and, unless the person is typing in it, fills
  // the form with its budget. `editable` false greys the form out for
  // someone whose role may not change it (the server refuses them anyway).
  function render(b, editing, editable) {
    const can = editable !== false;
    for (const el of $("budget-form").querySelectorAll("input, button")) el.disabled = !can;
    $("budget-form").title = can ? "" : "only the team's admins change its budget";
    const now = Date.now();
    let dailyRate = 0;
    const parts = b.windows.map((w) => {
      const v = windowView(w, now);
      if (w.window === "daily") dailyRate = v.rate;
      return v.div;
    });
    $("budget-windows").replaceChildren(...parts);
    const avail = b.available;
    $("runout").textContent = dailyRate > 0
      ? `At today's rate the available balance of ${fmt(avail)} lasts until ${when(now + Number(avail) / dailyRate)}.`
      : `Available balance: ${fmt(avail)}; nothing spent today.`;
    if (!editing) {
      for (const n of WINDOWS) {
        const v = b.budget[n];
        $(`budget-${n}`).value = v === null || v === undefined ? "" : fmt(v);
      }
    }
  }

  // Decimal text of the windows a limits object sets.
  function limitsText(lim) {
    const out = {};
    for (const n of WINDOWS) {
      if (lim[n] !== null && lim[n] !== undefined) out[n] = fmt(lim[n]);
    }
    return out;
  }

  // The body that sets the form's windows and keeps every other cap of
  // `current` (per provider, per spender): the form edits only the three.
  // Throws with a readable message for an amount that is not one.
  function formBody(current) {
    const body = { per_provider: {} };
    for (const n of WINDOWS) {
      const text = $(`budget-${n}`).value.trim();
      if (!text) continue;
      if (money.toMicros(text) === null) {
        throw new Error(`${n}: "${text}" is not an amount of credits (up to 6 decimal places)`);
      }
      body[n] = text;
    }
    const cur = (current && current.budget) || {};
    for (const [name, lim] of Object.entries(cur.per_provider || {})) body.per_provider[name] = limitsText(lim);
    if (cur.spenders && Object.keys(cur.spenders).length) {
      body.spenders = {};
      for (const [id, sp] of Object.entries(cur.spenders)) {
        const out = limitsText(sp);
        out.per_provider = {};
        for (const [name, lim] of Object.entries(sp.per_provider || {})) out.per_provider[name] = limitsText(lim);
        body.spenders[id] = out;
      }
    }
    return body;
  }

  window.OneFlowBudget = { render, formBody };
})();
