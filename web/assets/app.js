// The OneFlow dashboard: plain JavaScript over the JSON API.
//
// The API key lives in sessionStorage (this tab only) and goes out as
// `Authorization: Bearer <key>`. Every few seconds the page re-reads what it
// shows; nothing reloads. Money is BigInt micro-credits (see money.js) and is
// only ever turned into text by `money.format`.
"use strict";

(function () {
  const money = window.OneFlowMoney;
  const charts = window.OneFlowCharts;
  const KEY_STORE = "oneflow.key";
  const POLL_MS = 3000;
  const CHART_RECORDS = 500;

  // Blocked loads are recorded so tests (and curious people) can see them.
  window.__oneflowCspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__oneflowCspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
  });

  const $ = (id) => document.getElementById(id);

  const state = {
    key: null,
    me: null, // the caller's own /api/status
    subject: "", // user id an admin is looking at; "" = own account
    providers: [],
    hist: { cursors: [null], index: 0, next: null, items: [] },
    ledger: { cursors: [null], index: 0, next: null, items: [] },
    budget: null,
    budgetEdited: false,
    users: [],
    tick: 0,
    polling: false,
    timer: null,
  };

  // ---- HTTP ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const e = body && body.error;
      super(e ? `${e.code}: ${e.message}` : `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body, headers) {
    const h = Object.assign({ Authorization: `Bearer ${state.key}` }, headers || {});
    if (body !== undefined) h["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const text = await res.text();
    let data = null;
    try {
      data = text ? money.parseJson(text) : null;
    } catch (_) {
      data = { error: { code: "bad_response", message: text.slice(0, 200) } };
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // Adds `user_id` when an admin looks at another user's account.
  function forSubject(path) {
    if (!state.subject) return path;
    return path + (path.includes("?") ? "&" : "?") + "user_id=" + encodeURIComponent(state.subject);
  }

  // ---- small DOM helpers ----------------------------------------------------

  function row(cells, attrs) {
    const tr = document.createElement("tr");
    for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }

  function fillBody(table, rows, emptyText, columns) {
    const tb = table.tBodies[0];
    tb.replaceChildren(...rows);
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns;
      td.className = "muted";
      td.textContent = emptyText;
      tr.appendChild(td);
      tb.appendChild(tr);
    }
  }

  const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");
  const pct = (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)}%` : "");
  const fmt = money.format;

  function setMsg(el, text, isError) {
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  // ---- sign in / out --------------------------------------------------------

  async function signIn(key) {
    state.key = key;
    const me = await api("GET", "/api/status");
    state.me = me;
    sessionStorage.setItem(KEY_STORE, key);
    $("signin-panel").hidden = true;
    $("app").hidden = false;
    $("session").hidden = false;
    $("who").textContent = `${me.user_id} (${me.role})`;
    const admin = me.role === "admin";
    $("subject-wrap").hidden = !admin;
    $("users-panel").hidden = !admin;
    await refresh();
    startPolling();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    if (state.timer) clearInterval(state.timer);
    Object.assign(state, {
      key: null, me: null, subject: "", timer: null, users: [], budget: null, budgetEdited: false,
    });
    resetPaging();
    // Nothing of the previous account stays on the page.
    for (const id of ["quote-out", "answer-out"]) {
      $(id).replaceChildren();
      delete $(id).dataset.requestId;
    }
    for (const id of ["topup-msg", "budget-msg"]) setMsg($(id), "");
    $("send-form").reset();
    $("budget-form").reset();
    $("topup-form").reset();
    $("model").dataset.auto = "1";
    applyModality();
    for (const t of ["history-table", "ledger-table", "users-table", "providers-table"]) {
      $(t).tBodies[0].replaceChildren();
    }
    $("app").hidden = true;
    $("session").hidden = true;
    $("signin-panel").hidden = false;
    $("key").value = "";
    setMsg($("signin-error"), message || "", !!message);
  }

  function resetPaging() {
    state.hist = { cursors: [null], index: 0, next: null, items: [] };
    state.ledger = { cursors: [null], index: 0, next: null, items: [] };
  }

  // ---- refresh --------------------------------------------------------------

  async function refresh() {
    if (!state.key || state.polling) return;
    state.polling = true;
    const jobs = [refreshStatus(), refreshProviders(), refreshHistory(), refreshLedger(),
      refreshBudget(), refreshActivity()];
    if (state.me && state.me.role === "admin" && state.tick % 3 === 0) jobs.push(refreshUsers());
    state.tick += 1;
    try {
      const results = await Promise.allSettled(jobs);
      const failed = results.find((r) => r.status === "rejected");
      if (failed && failed.reason instanceof ApiError && failed.reason.status === 401) {
        signOut("Your key is no longer accepted; sign in again.");
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
    const s = await api("GET", forSubject("/api/status"));
    $("balance").textContent = fmt(s.balance);
    $("available").textContent = fmt(s.available);
    $("held").textContent = fmt(s.held);
    const p = s.persistence || {};
    // The broker's own figures come to admins only.
    $("system").textContent =
      `v${s.version} · providers ${s.providers_up.length}/${s.providers_total}` +
      (s.uptime_secs !== undefined
        ? ` · up ${s.uptime_secs}s · wallets ${s.wallets_alive} · queued writes ${s.writes_queued}`
        : "") +
      (p.commits !== undefined ? ` · commits ${p.commits}` : "");
    $("balance").dataset.micros = s.balance.toString();
  }

  async function refreshProviders() {
    const data = await api("GET", "/api/providers");
    state.providers = data.providers;
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
    fillModels();
  }

  // Models offered for the chosen modality: provider names and their models.
  function fillModels() {
    const m = $("modality").value;
    const names = [];
    for (const p of state.providers.filter((p) => p.modality === m)) {
      names.push(p.name, ...(p.models || []));
    }
    const dl = $("models");
    const opts = names.map((n) => {
      const o = document.createElement("option");
      o.value = n;
      return o;
    });
    dl.replaceChildren(...opts);
    const model = $("model");
    if (!model.value || (!names.includes(model.value) && model.dataset.auto === "1")) {
      model.value = names[0] || "";
      model.dataset.auto = "1";
    }
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

  // ---- budgets and burn-down -----------------------------------------------

  const DAY = 86400000;

  function windowStart(name, resetsAt) {
    if (name === "daily") return resetsAt - DAY;
    if (name === "weekly") return resetsAt - 7 * DAY;
    const d = new Date(resetsAt);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1);
  }

  async function refreshBudget() {
    const b = await api("GET", forSubject("/api/budget"));
    state.budget = b;
    const now = Date.now();
    const box = $("budget-windows");
    const parts = [];
    let dailyRate = 0; // micro-credits per ms, for the balance projection only
    for (const w of b.windows) {
      const start = windowStart(w.window, w.resets_at);
      const elapsed = Math.max(1, now - start);
      const used = w.spent + w.held;
      const rate = Number(w.spent) / elapsed;
      if (w.window === "daily") dailyRate = rate;
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
      parts.push(div);
    }
    box.replaceChildren(...parts);
    const avail = b.available;
    $("runout").textContent = dailyRate > 0
      ? `At today's rate the available balance of ${fmt(avail)} lasts until ${when(now + Number(avail) / dailyRate)}.`
      : `Available balance: ${fmt(avail)}; nothing spent today.`;
    if (!state.budgetEdited) {
      for (const n of ["daily", "weekly", "monthly"]) {
        const v = b.budget[n];
        $(`budget-${n}`).value = v === null || v === undefined ? "" : fmt(v);
      }
    }
  }

  async function saveBudget(ev) {
    ev.preventDefault();
    const msg = $("budget-msg");
    const body = { per_provider: {} };
    for (const n of ["daily", "weekly", "monthly"]) {
      const text = $(`budget-${n}`).value.trim();
      if (!text) continue;
      if (money.toMicros(text) === null) {
        setMsg(msg, `${n}: "${text}" is not an amount of credits (up to 6 decimal places)`, true);
        return;
      }
      body[n] = text;
    }
    // Keep the per-provider caps that are already set.
    const pp = (state.budget && state.budget.budget.per_provider) || {};
    for (const [name, lim] of Object.entries(pp)) {
      const out = {};
      for (const n of ["daily", "weekly", "monthly"]) {
        if (lim[n] !== null && lim[n] !== undefined) out[n] = fmt(lim[n]);
      }
      body.per_provider[name] = out;
    }
    try {
      await api("PUT", forSubject("/api/budget"), body);
      state.budgetEdited = false;
      setMsg(msg, "Budget saved.");
      await refreshBudget();
    } catch (e) {
      setMsg(msg, e.message, true);
    }
  }

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

  function syncUserSelects() {
    const subject = $("subject");
    const topup = $("topup-user");
    const keepS = subject.value;
    const keepT = topup.value;
    const own = document.createElement("option");
    own.value = "";
    own.textContent = "my account";
    const opts = state.users.filter((u) => u.id !== state.me.user_id).map((u) => {
      const o = document.createElement("option");
      o.value = u.id;
      o.textContent = `${u.name} (${u.id})`;
      return o;
    });
    subject.replaceChildren(own, ...opts.map((o) => o.cloneNode(true)));
    subject.value = keepS;
    const selfOpt = document.createElement("option");
    selfOpt.value = state.me.user_id;
    selfOpt.textContent = `${state.me.user_id} (me)`;
    topup.replaceChildren(...opts, selfOpt);
    if (keepT) topup.value = keepT;
  }

  function setSubject(id) {
    state.subject = id;
    $("subject").value = id;
    state.budgetEdited = false;
    resetPaging();
    refresh();
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

  // ---- sending requests -----------------------------------------------------

  function applyModality() {
    const m = $("modality").value;
    for (const label of document.querySelectorAll("#send-form [data-for]")) {
      const on = label.dataset.for.split(" ").includes(m);
      label.hidden = !on;
    }
    fillModels();
  }

  function buildRequest() {
    const m = $("modality").value;
    const body = { model: $("model").value.trim(), prompt: $("prompt").value };
    const int = (id) => {
      const v = $(id).value.trim();
      return v === "" ? undefined : Number.parseInt(v, 10);
    };
    if (m === "text") body.max_tokens = int("max_tokens");
    if (m === "image") {
      body.n = int("n");
      const size = $("size").value.trim();
      if (size) body.size = size;
    }
    if (m === "audio" || m === "video") body.seconds = int("seconds");
    if ($("strategy").value) body.strategy = $("strategy").value;
    if ($("region").value) body.region = $("region").value;
    const mp = $("max_price").value.trim();
    if (mp) {
      if (money.toMicros(mp) === null) throw new Error(`max price "${mp}" is not an amount of credits`);
      body.max_price = mp;
    }
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    return body;
  }

  function kv(pairs) {
    const dl = document.createElement("dl");
    for (const [k, v, id] of pairs) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      if (id) dd.id = id;
      dl.append(dt, dd);
    }
    return dl;
  }

  function showError(out, e) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = e.message;
    out.replaceChildren(p);
  }

  async function quote() {
    const out = $("quote-out");
    let body;
    try {
      body = buildRequest();
      const q = await api("POST", "/api/quote", body);
      out.replaceChildren(kv([
        ["Quote (most it can cost)", `${fmt(q.quote)} credits`, "quote-amount"],
        ["Provider", `${q.provider} (${q.modality})`],
        ["Available", `${fmt(q.available)} credits`],
        ["Affordable", q.affordable ? "yes" : "no"],
        ["Route", q.route],
      ]));
      out.dataset.quote = fmt(q.quote);
      return q;
    } catch (e) {
      showError(out, e);
      return null;
    }
  }

  function idempotencyKey() {
    if (crypto.randomUUID) return `dash-${crypto.randomUUID()}`;
    const b = crypto.getRandomValues(new Uint8Array(16));
    return "dash-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function send(ev) {
    ev.preventDefault();
    const out = $("answer-out");
    delete out.dataset.requestId;
    out.replaceChildren();
    const btn = $("send-btn");
    btn.disabled = true;
    try {
      const q = await quote();
      if (!q) return;
      if (!q.affordable) {
        showError(out, new Error(`not enough available credits for a quote of ${fmt(q.quote)}`));
        return;
      }
      out.textContent = "sending…";
      let r;
      try {
        r = await api("POST", "/api/request", buildRequest(), { "Idempotency-Key": idempotencyKey() });
      } catch (e) {
        // A failed upstream call still names the request; its hold was released.
        if (e.body && e.body.request) r = e.body.request;
        else throw e;
      }
      const pairs = [
        ["Status", r.status, "answer-status"],
        ["Answer", r.response || r.error || "", "answer-text"],
        ["Cost", `${fmt(r.cost)} credits`, "answer-cost"],
        ["Quote", `${fmt(r.quote)} credits`],
        ["Route", r.route || ""],
        ["Provider", r.provider || ""],
        ["Latency", r.latency_ms !== undefined ? `${r.latency_ms} ms` : ""],
        ["Request", r.request_id, "answer-id"],
      ];
      if (r.usage) {
        const u = r.usage;
        pairs.splice(3, 0, ["Usage", `in ${u.input_tokens} · out ${u.output_tokens} tokens · ${u.images} images · ${u.seconds} s`]);
      }
      out.replaceChildren(kv(pairs));
      out.dataset.cost = fmt(r.cost);
      out.dataset.requestId = r.request_id;
      await refresh();
    } catch (e) {
      showError(out, e);
    } finally {
      btn.disabled = false;
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
    $("signin").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const key = $("key").value.trim();
      try {
        await signIn(key);
      } catch (e) {
        signOut(e.status === 401 ? "That key is not valid." : e.message);
      }
    });
    $("signout").addEventListener("click", () => signOut());
    $("subject").addEventListener("change", (e) => setSubject(e.target.value));
    $("modality").addEventListener("change", () => {
      $("model").dataset.auto = "1";
      $("model").value = "";
      applyModality();
    });
    $("model").addEventListener("input", () => { $("model").dataset.auto = "0"; });
    $("quote-btn").addEventListener("click", () => quote());
    $("send-form").addEventListener("submit", send);
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
    applyModality();
    $("footer").textContent = "OneFlow · all figures in credits, exact to the micro-credit";

    const saved = sessionStorage.getItem(KEY_STORE);
    if (saved) signIn(saved).catch(() => signOut("Your saved key is no longer accepted; sign in again."));
  }

  init();
})();
