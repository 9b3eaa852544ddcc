// The OneFlow dashboard: plain JavaScript over the JSON API.
//
// signin.js holds the credential (a key, or an account's tokens) and makes
// every call; ui.js, budget.js, teams.js, webhooks.js and send.js draw their
// parts.
// This file signs in and out, chooses what is on view and re-reads it every
// few seconds; nothing reloads. Money is BigInt micro-credits (see money.js)
// and is only ever turned into text by `money.format`.
"use strict";

(function () {
  const money = window.OneFlowMoney;
  const charts = window.OneFlowCharts;
  const session = window.OneFlowSession;
  const budgets = window.OneFlowBudget;
  const teams = window.OneFlowTeams;
  const webhooks = window.OneFlowWebhooks;
  const experiments = window.OneFlowExperiments;
  const dashboards = window.OneFlowDashboards;
  const sender = window.OneFlowSend;
  const { ApiError, api } = session;
  const { $, row, fillBody, when, pct, setMsg } = window.OneFlowUi;
  const POLL_MS = 3000;
  const CHART_RECORDS = 500;

  // Blocked loads are recorded so tests (and curious people) can see them.
  window.__oneflowCspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__oneflowCspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
  });

  const state = {
    me: null, // the caller's own /api/status
    subject: "", // user id an admin is looking at; "" = own account
    team: null, // id of the team on view instead of a person's account
    teams: [], // the teams the person may choose
    hist: { cursors: [null], index: 0, next: null, items: [] },
    ledger: { cursors: [null], index: 0, next: null, items: [] },
    budget: null,
    budgetEdited: false,
    users: [],
    tick: 0,
    polling: false,
    timer: null,
  };

  // Adds `user_id` when an admin looks at another user's account.
  function withUser(path, id) {
    if (!id) return path;
    return path + (path.includes("?") ? "&" : "?") + "user_id=" + encodeURIComponent(id);
  }

  function forSubject(path) {
    return withUser(path, state.subject);
  }

  // Whose activity the charts show: the account on view, or the team on
  // view when the person may read all of its figures (its team admins,
  // viewers and billing members; an admin); `null`: no charts (a plain
  // member's figures are their own requests, in the team's table).
  function chartSubject() {
    if (!state.team) return state.subject;
    const t = state.teams.find((x) => x.id === state.team);
    return t && state.me && teams.powers(t, state.me).seesAll ? state.team : null;
  }

  const fmt = money.format;

  // ---- sign in / out --------------------------------------------------------

  // Shows the app for the session signin.js now holds.
  async function enter() {
    const me = await api("GET", "/api/status");
    state.me = me;
    $("signin-panel").hidden = true;
    $("app").hidden = false;
    $("session").hidden = false;
    $("who").textContent = `${me.user_id} (${me.role})`;
    const admin = me.role === "admin";
    $("users-panel").hidden = !admin;
    window.OneFlowReconcile.enter(admin).catch((e) => setMsg($("rc-msg"), e.message, true));
    $("experiments-panel").hidden = !admin;
    await loadTeams();
    applyView();
    await refresh();
    startPolling();
  }

  function signOut(message) {
    session.end();
    if (state.timer) clearInterval(state.timer);
    Object.assign(state, {
      me: null, subject: "", team: null, teams: [], timer: null, users: [], budget: null, budgetEdited: false,
    });
    resetPaging();
    // Nothing of the previous account stays on the page.
    for (const id of ["topup-msg", "budget-msg"]) setMsg($(id), "");
    sender.reset();
    $("budget-form").reset();
    $("topup-form").reset();
    for (const t of ["history-table", "ledger-table", "users-table", "providers-table"]) {
      $(t).tBodies[0].replaceChildren();
    }
    teams.clear();
    dashboards.clear();
    webhooks.clear();
    window.OneFlowReconcile.clear();
    experiments.clear();
    $("subject").replaceChildren(subjectOption("", "my account"));
    $("app").hidden = true;
    $("session").hidden = true;
    $("signin-panel").hidden = false;
    $("key").value = "";
    $("password").value = "";
    setMsg($("signin-error"), message || "", !!message);
  }

  function resetPaging() {
    state.hist = { cursors: [null], index: 0, next: null, items: [] };
    state.ledger = { cursors: [null], index: 0, next: null, items: [] };
    teams.resetPaging();
  }

  // ---- the account or team on view -----------------------------------------

  function subjectOption(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  function group(label, options) {
    const g = document.createElement("optgroup");
    g.label = label;
    g.append(...options);
    return g;
  }

  // One menu for everything a person can look at: their account, their
  // teams and, for an admin, every user. A team's value is `team:<id>`.
  function syncSubjects() {
    const subject = $("subject");
    const keep = subject.value;
    const parts = [subjectOption("", "my account")];
    if (state.teams.length) {
      parts.push(group("Teams", state.teams.map((t) => subjectOption(`team:${t.id}`, `${t.name} (team)`))));
    }
    const others = state.users.filter((u) => u.id !== state.me.user_id);
    if (others.length) parts.push(group("Users", others.map((u) => subjectOption(u.id, `${u.name} (${u.id})`))));
    subject.replaceChildren(...parts);
    subject.value = keep;
    if (subject.value !== keep) subject.value = "";
    $("subject-wrap").hidden = parts.length === 1;
  }

  async function loadTeams() {
    try {
      state.teams = await teams.list();
    } catch (e) {
      state.teams = [];
    }
    // A team the person has left is no longer on view.
    if (state.team && !state.teams.some((t) => t.id === state.team)) {
      state.team = null;
    }
    // A role in the team may have changed what is shown (the charts).
    applyView();
    syncSubjects();
  }

  // Parts about a person's own account step aside for a team's, and back.
  function applyView() {
    const view = state.team ? "team" : "personal";
    for (const el of document.querySelectorAll("#app [data-view]")) el.hidden = el.dataset.view !== view;
    $("charts-panel").hidden = chartSubject() === null;
  }

  function setSubject(value) {
    state.team = value.startsWith("team:") ? value.slice(5) : null;
    state.subject = state.team ? "" : value;
    $("subject").value = value;
    state.budgetEdited = false;
    setMsg($("budget-msg"), "");
    resetPaging();
    applyView();
    refresh();
  }

  // ---- refresh --------------------------------------------------------------

  async function refresh() {
    if (!session.kind() || state.polling) return;
    state.polling = true;
    const jobs = [refreshStatus(), refreshProviders()];
    if (state.team) {
      jobs.push(teams.refresh(state.team, state.me, state.budgetEdited).then((w) => { state.budget = w; }));
      if (chartSubject() !== null) jobs.push(refreshActivity());
    } else {
      jobs.push(refreshHistory(), refreshLedger(), refreshBudget(), refreshActivity(),
        webhooks.refresh(state.subject));
    }
    // Saved dashboards of the account or team on view (re-read slowly);
    // none for a plain member's view of a team, whose figures it cannot read.
    const dashOwner = chartSubject();
    if (dashOwner === null) dashboards.clear();
    else jobs.push(dashboards.refresh(dashOwner));
    if (state.tick % 3 === 0) {
      if (state.me && state.me.role === "admin") jobs.push(refreshUsers(), experiments.refresh());
      jobs.push(loadTeams());
    }
    state.tick += 1;
    try {
      const results = await Promise.allSettled(jobs);
      const failed = results.find((r) => r.status === "rejected");
      if (failed && failed.reason instanceof ApiError && failed.reason.status === 401) {
        signOut(session.kind() === "key"
          ? "Your key is no longer accepted; sign in again."
          : "Your session has ended; sign in again.");
        return;
      }
      const live = $("live");
      live.textContent = failed ? `error: ${failed.reason.message}` : `live · ${new Date().toLocaleTimeString()}`;
      live.classList.toggle("stale", !!failed);
    } finally {
      state.polling = false;
    }
  }

  function startPolling() {
    if (state.timer) clearInterval(state.timer);
    state.timer = setInterval(() => {
      if (!document.hidden) refresh();
    }, POLL_MS);
  }

  async function refreshStatus() {
    // A team's wallet fills the cards itself (teams.js); the system line is
    // the broker's either way.
    const s = await api("GET", state.team ? "/api/status" : forSubject("/api/status"));
    if (!state.team) {
      $("balance").textContent = fmt(s.balance);
      $("available").textContent = fmt(s.available);
      $("held").textContent = fmt(s.held);
      $("balance").dataset.micros = s.balance.toString();
    }
    const p = s.persistence || {};
    // The broker's own figures come to admins only.
    $("system").textContent =
      `v${s.version} · providers ${s.providers_up.length}/${s.providers_total}` +
      (s.uptime_secs !== undefined
        ? ` · up ${s.uptime_secs}s · wallets ${s.wallets_alive} · queued writes ${s.writes_queued}`
        : "") +
      (p.commits !== undefined ? ` · commits ${p.commits}` : "");
  }

  async function refreshProviders() {
    const data = await api("GET", "/api/providers");
    const rows = data.providers.map((p) => {
      const l = p.limits || {};
      const up = p.up ? "up" : "down";
      const tr = row([
        p.name, p.modality, p.region, up, p.circuit,
        `${Math.round(p.health.latency_ms)} ms`, pct(p.health.success_rate),
        `${p.queued}/${l.queue} · ${p.in_flight}/${l.max_concurrency}`,
        `${l.requests_per_second || "∞"} / ${l.burst} / ${l.max_concurrency}`
          + (l.requests_per_minute ? ` · ${l.requests_per_minute} req/min` : "")
          + (l.tokens_per_minute ? ` · ${l.tokens_per_minute} tok/min` : ""),
        p.rejected,
      ], { "data-provider": p.name });
      tr.cells[3].className = p.up ? "ok" : "bad";
      tr.cells[4].className = p.circuit === "closed" ? "ok" : "bad";
      return tr;
    });
    fillBody($("providers-table"), rows, "no providers configured", 10);
    sender.providers(data.providers);
  }

  function historyFilter(r) {
    const st = $("f-status").value;
    const mo = $("f-modality").value;
    const q = $("f-text").value.trim().toLowerCase();
    if (st && r.status !== st) return false;
    if (mo && r.modality !== mo) return false;
    if (q) {
      const hay = [r.id, r.model, r.provider, r.prompt_preview, r.route].join(" ").toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }

  async function refreshHistory() {
    const h = state.hist;
    const limit = $("h-limit").value;
    const cursor = h.cursors[h.index];
    const path = `/api/history/requests?limit=${limit}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const page = await api("GET", forSubject(path));
    h.items = page.items;
    h.next = page.next_cursor || null;
    renderHistory();
  }

  function renderHistory() {
    const h = state.hist;
    const rows = h.items.filter(historyFilter).map((r) => {
      const tr = row([
        when(r.created_at), r.id, r.model, r.provider || "", r.status,
        fmt(r.quote), fmt(r.cost), r.latency_ms !== undefined ? `${r.latency_ms} ms` : "",
        r.prompt_preview || "",
      ], { "data-request-id": r.id });
      tr.cells[4].className = r.status === "succeeded" ? "ok" : "bad";
      if (r.error) tr.title = r.error;
      return tr;
    });
    fillBody($("history-table"), rows, h.items.length ? "no request on this page matches the filters" : "no requests yet", 9);
    $("h-page").textContent = `page ${h.index + 1}`;
    $("h-prev").disabled = h.index === 0;
    $("h-next").disabled = !h.next;
  }

  async function refreshLedger() {
    const l = state.ledger;
    const limit = $("l-limit").value;
    const cursor = l.cursors[l.index];
    const path = `/api/history/transactions?limit=${limit}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const page = await api("GET", forSubject(path));
    l.items = page.items;
    l.next = page.next_cursor || null;
    renderLedger();
  }

  function renderLedger() {
    const l = state.ledger;
    const kind = $("f-kind").value;
    const rows = l.items.filter((t) => !kind || t.kind === kind).map((t) => {
      return row([
        when(t.at), t.seq, t.kind, fmt(t.amount), fmt(t.balance_after), fmt(t.available_after),
        t.request_id || "", t.note || "",
      ], { "data-seq": String(t.seq), "data-kind": t.kind });
    });
    fillBody($("ledger-table"), rows, l.items.length ? "no entry on this page matches the filter" : "no ledger entries yet", 8);
    $("l-page").textContent = `page ${l.index + 1}`;
    $("l-prev").disabled = l.index === 0;
    $("l-next").disabled = !l.next;
  }

  // ---- budgets (budget.js draws them) ---------------------------------------

  async function refreshBudget() {
    const b = await api("GET", forSubject("/api/budget"));
    state.budget = b;
    budgets.render(b, state.budgetEdited);
  }

  async function saveBudget(ev) {
    ev.preventDefault();
    const msg = $("budget-msg");
    try {
      const body = budgets.formBody(state.budget);
      const path = state.team ? `/api/teams/${encodeURIComponent(state.team)}/budget` : forSubject("/api/budget");
      const b = await api("PUT", path, body);
      state.budgetEdited = false;
      setMsg(msg, "Budget saved.");
      state.budget = b;
      await refresh();
    } catch (e) {
      setMsg(msg, e.message, true);
    }
  }

  const DAY = 86400000;

  // ---- charts ---------------------------------------------------------------

  // Time series from the analytics answer, when it carries one.
  function seriesFromAnalytics(a) {
    const s = a && (a.series || a.buckets || a.timeline);
    if (!Array.isArray(s) || s.length === 0) return null;
    const t = (b) => b.t ?? b.start ?? b.bucket_start ?? b.at ?? b.ts;
    if (t(s[0]) === undefined) return null;
    const pts = s.map((b) => ({
      t: Number(t(b)),
      requests: Number(b.requests ?? b.count ?? 0),
      cost: typeof b.cost === "bigint" ? b.cost : 0n,
      // An empty bucket has no latency, not a latency of zero.
      latency: Number(b.requests ?? b.count ?? 0) > 0
        ? Number(b.mean_latency_ms ?? b.latency_p50_ms ?? b.p50_ms ?? b.latency_ms ?? 0)
        : null,
    })).sort((x, y) => x.t - y.t);
    const step = pts.length > 1 ? Math.max(60000, pts[1].t - pts[0].t) : 60000;
    return { pts, step, note: "from analytics" };
  }

  // Buckets the newest request records by minute, hour or day.
  function seriesFromRecords(items) {
    if (items.length === 0) return { pts: [], step: 60000, note: "" };
    const ts = items.map((r) => r.created_at);
    const hi = Math.max(Date.now(), ...ts);
    const span = hi - Math.min(...ts);
    const step = span <= 2 * 3600000 ? 60000 : span <= 4 * DAY ? 3600000 : DAY;
    // At least 30 buckets up to now, so one busy minute is not the whole axis;
    // at most 400, so a long quiet history stays cheap to draw.
    const last = Math.floor(hi / step) * step;
    const first = Math.max(last - 399 * step, Math.min(Math.floor(Math.min(...ts) / step) * step, last - 29 * step));
    const buckets = new Map();
    for (let b = first; b <= last; b += step) {
      buckets.set(b, { t: b, requests: 0, cost: 0n, latSum: 0, latN: 0 });
    }
    for (const r of items) {
      const b = buckets.get(Math.floor(r.created_at / step) * step);
      if (!b) continue;
      b.requests += 1;
      b.cost += r.cost;
      if (typeof r.latency_ms === "number") {
        b.latSum += r.latency_ms;
        b.latN += 1;
      }
    }
    const pts = [...buckets.values()].map((b) => ({
      t: b.t, requests: b.requests, cost: b.cost, latency: b.latN ? b.latSum / b.latN : null,
    }));
    return { pts, step, note: `from the latest ${items.length} requests` };
  }

  async function refreshActivity() {
    const who = chartSubject();
    const forSubject = (path) => withUser(path, who);
    const a = await api("GET", forSubject("/api/analytics"));
    const allUsers = !a.user_id;
    $("totals").textContent = `${a.total_requests} / ${pct(a.success_rate)}` + (allUsers ? " (all users)" : "");
    $("total-cost").textContent = fmt(a.total_cost) + (allUsers ? " (all users)" : "");
    // The last three hours by minute, from the rollups: the same figures as
    // the totals, whatever the number of stored requests.
    const from = Date.now() - 3 * 3600000;
    let series = null;
    try {
      const sep = forSubject("/api/analytics/series").includes("?") ? "&" : "?";
      const s = await api("GET", forSubject("/api/analytics/series") + `${sep}bucket=minute&from=${from}`);
      series = seriesFromAnalytics({ series: s.points });
      if (series) series.note = "last 3 hours, by minute";
    } catch (e) {
      series = null;
    }
    if (!series) {
      const page = await api("GET", forSubject(`/api/history/requests?limit=${CHART_RECORDS}`));
      series = seriesFromRecords(page.items);
    }
    $("charts-note").textContent = series.note;
    const { pts, step } = series;
    const span = pts.length ? { from: pts[0].t, to: pts[pts.length - 1].t + step } : {};
    charts.draw($("chart-requests"), pts.map((p) => ({ t: p.t, v: p.requests, label: `${p.requests} requests` })), {
      ...span, kind: "bar", step, axis: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)),
    });
    // Heights in floats are only geometry; every label is exact text.
    charts.draw($("chart-cost"), pts.map((p) => ({ t: p.t, v: Number(p.cost) / 1e6, label: `${fmt(p.cost)} credits` })), {
      ...span, kind: "bar", step, axis: (v) => fmt(BigInt(Math.round(v * 1e6))),
    });
    // The exact total, for people hovering and for tests.
    $("chart-cost").dataset.total = fmt(pts.reduce((a, p) => a + p.cost, 0n));
    const lat = pts.filter((p) => p.latency !== null);
    charts.draw($("chart-latency"), lat.map((p) => ({ t: p.t, v: p.latency, label: `${Math.round(p.latency)} ms` })), {
      ...span, kind: "line", step, axis: (v) => (v >= 10 ? `${Math.round(v)}` : v.toFixed(1)),
    });
  }

  // ---- admin: users and top-ups ---------------------------------------------

  async function refreshUsers() {
    const data = await api("GET", "/api/users");
    const users = data.users.slice(0, 100);
    const wallets = await Promise.all(users.map((u) =>
      api("GET", `/api/status?user_id=${encodeURIComponent(u.id)}`).catch(() => null)));
    state.users = users.map((u, i) => Object.assign({}, u, { wallet: wallets[i] }));
    const rows = state.users.map((u) => {
      const view = document.createElement("button");
      view.type = "button";
      view.className = "secondary small";
      view.textContent = "View";
      view.addEventListener("click", () => setSubject(u.id === state.me.user_id ? "" : u.id));
      return row([
        u.name, u.email, u.id, u.role,
        u.wallet ? fmt(u.wallet.balance) : "", u.wallet ? fmt(u.wallet.available) : "",
        when(u.created_at), view,
      ], { "data-user-id": u.id });
    });
    fillBody($("users-table"), rows, "no users", 8);
    syncUserSelects();
  }

  // The top-up menu: every user, the admin, and the teams (a team's wallet
  // is topped up under its id).
  function syncUserSelects() {
    syncSubjects();
    const topup = $("topup-user");
    const keep = topup.value;
    const users = state.users.filter((u) => u.id !== state.me.user_id)
      .map((u) => subjectOption(u.id, `${u.name} (${u.id})`));
    users.push(subjectOption(state.me.user_id, `${state.me.user_id} (me)`));
    const parts = [...users];
    if (state.teams.length) {
      parts.push(group("Teams", state.teams.map((t) => subjectOption(t.id, `${t.name} (${t.id})`))));
    }
    topup.replaceChildren(...parts);
    if (keep) topup.value = keep;
  }

  async function topUp(ev) {
    ev.preventDefault();
    const msg = $("topup-msg");
    const amount = $("topup-amount").value.trim();
    if (money.toMicros(amount) === null || money.toMicros(amount) <= 0n) {
      setMsg(msg, `"${amount}" is not a positive amount of credits (up to 6 decimal places)`, true);
      return;
    }
    const body = { user_id: $("topup-user").value, amount };
    const note = $("topup-note").value.trim();
    if (note) body.note = note;
    try {
      const r = await api("POST", "/api/credits/add", body);
      setMsg(msg, `Added ${fmt(r.added)} to ${r.user_id}; balance now ${fmt(r.balance)}.`);
      $("topup-amount").value = "";
      state.tick = 0; // re-read the users table on this refresh
      await refresh();
    } catch (e) {
      setMsg(msg, e.message, true);
    }
  }

  // ---- wiring ---------------------------------------------------------------

  function pager(which, refreshFn) {
    const p = () => state[which];
    $(`${which === "hist" ? "h" : "l"}-prev`).addEventListener("click", () => {
      if (p().index > 0) p().index -= 1;
      refreshFn().catch(() => {});
    });
    $(`${which === "hist" ? "h" : "l"}-next`).addEventListener("click", () => {
      const s = p();
      if (!s.next) return;
      s.cursors = s.cursors.slice(0, s.index + 1);
      s.cursors.push(s.next);
      s.index += 1;
      refreshFn().catch(() => {});
    });
  }

  function init() {
    teams.init(() => refresh());
    $("signin").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = $("key").value.trim();
      attempt($("signin-btn"), () => session.useKey(key));
    });
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const email = $("email").value.trim();
      const password = $("password").value;
      attempt($("login-btn"), () => session.login(email, password));
    });
    session.onLost = (message) => signOut(message);
    $("signout").addEventListener("click", () => signOut());
    $("subject").addEventListener("change", (e) => setSubject(e.target.value));
    sender.init(() => refresh());
    $("budget-form").addEventListener("submit", saveBudget);
    $("budget-form").addEventListener("input", () => { state.budgetEdited = true; });
    $("topup-form").addEventListener("submit", topUp);
    for (const id of ["f-status", "f-modality", "f-text"]) $(id).addEventListener("input", renderHistory);
    $("f-kind").addEventListener("input", renderLedger);
    $("h-limit").addEventListener("change", () => { state.hist = { cursors: [null], index: 0, next: null, items: [] }; refreshHistory().catch(() => {}); });
    $("l-limit").addEventListener("change", () => { state.ledger = { cursors: [null], index: 0, next: null, items: [] }; refreshLedger().catch(() => {}); });
    pager("hist", refreshHistory);
    pager("ledger", refreshLedger);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    $("footer").textContent = "OneFlow · all figures in credits, exact to the micro-credit";

    if (session.restore()) enter().catch(() => signOut("Your saved sign-in is no longer accepted; sign in again."));
  }

  // One sign-in: `start` sets up the session, then the app opens on it.
  // The button stays disabled meanwhile (a password takes the server a
  // moment to check), and a refusal is said in words.
  async function attempt(btn, start) {
    btn.disabled = true;
    setMsg($("signin-error"), "");
    try {
      await start();
      await enter();
    } catch (e) {
      signOut(session.explain(e));
    } finally {
      btn.disabled = false;
    }
  }

  init();
})();
