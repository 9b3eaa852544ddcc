// The "Send a request" panel: a form for each modality's options, a quote
// first (the most the request may cost, and its route), then the request
// itself under a fresh Idempotency-Key (a call signin.js sends again after
// refreshing the sign-in is then the same request, charged once).
"use strict";

(function () {
  const money = window.OneFlowMoney;
  const { api } = window.OneFlowSession;
  const { $ } = window.OneFlowUi;
  const fmt = money.format;

  const s = { providers: [], onSent: () => {} };

  // Models offered for the chosen modality: provider names and their models.
  function fillModels() {
    const m = $("modality").value;
    const names = [];
    for (const p of s.providers.filter((p) => p.modality === m)) {
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
      await s.onSent();
    } catch (e) {
      showError(out, e);
    } finally {
      btn.disabled = false;
    }
  }

  function init(onSent) {
    s.onSent = onSent;
    $("modality").addEventListener("change", () => {
      $("model").dataset.auto = "1";
      $("model").value = "";
      applyModality();
    });
    $("model").addEventListener("input", () => { $("model").dataset.auto = "0"; });
    $("quote-btn").addEventListener("click", () => quote());
    $("send-form").addEventListener("submit", send);
    applyModality();
  }

  // Nothing of the previous account's requests stays on the page.
  function reset() {
    for (const id of ["quote-out", "answer-out"]) {
      $(id).replaceChildren();
      delete $(id).dataset.requestId;
    }
    $("send-form").reset();
    $("model").dataset.auto = "1";
    applyModality();
  }

  window.OneFlowSend = {
    init,
    reset,
    providers(list) {
      s.providers = list;
      fillModels();
    },
  };
})();
