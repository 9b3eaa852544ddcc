// Who is signed in, and how every call to the API is authorized.
//
// Two kinds of session, each kept in sessionStorage (this tab only):
// - a key: sent as the bearer as it is, for as long as the server takes it;
// - an account (e-mail and password, docs/auth.md): the access token is the
//   bearer. It lives 15 minutes, so the refresh token buys the next pair a
//   little before it expires, and once more after a 401 (a sleeping laptop
//   misses its timer). Refresh tokens rotate and a token shown twice ends
//   its whole family, so only one refresh is ever in flight.
"use strict";

(function () {
  const money = window.OneFlowMoney;
  const KEY_STORE = "oneflow.key";
  const TOKEN_STORE = "oneflow.tokens";
  // How early to refresh: a minute, or a fifth of a short lifetime.
  const EARLY_MS = 60000;
  // A refresh that failed for want of an answer is tried again this soon.
  const RETRY_MS = 10000;

  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      const e = body && body.error;
      super(e ? `${e.code}: ${e.message}` : `HTTP ${status}`);
      this.status = status;
      this.body = body;
      this.code = e ? e.code : "";
      // Seconds, from `Retry-After` (lockouts and throttles send it).
      this.retryAfter = retryAfter;
    }
  }

  const s = {
    key: null,
    tokens: null, // { access, refresh, expiresAt }
    timer: null,
    renewing: null, // the one refresh in flight
    onLost: null, // told when an account session can no longer be renewed
  };

  // One HTTP call; `bearer` null sends no credential (the sign-in routes).
  async function call(method, path, body, headers, bearer) {
    const h = Object.assign({}, headers || {});
    if (bearer) h.Authorization = `Bearer ${bearer}`;
    // A file (an uploaded export) goes as it is; anything else as JSON.
    const raw = body instanceof Blob;
    if (body !== undefined && !raw) h["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers: h,
      body: body === undefined || raw ? body : JSON.stringify(body),
      cache: "no-store",
    });
    const text = await res.text();
    // A CSV answer (a report's download) is its text.
    if (res.ok && (res.headers.get("Content-Type") || "").startsWith("text/csv")) return text;
    let data = null;
    try {
      data = text ? money.parseJson(text) : null;
    } catch (_) {
      data = { error: { code: "bad_response", message: text.slice(0, 200) } };
    }
    if (!res.ok) {
      const ra = Number.parseInt(res.headers.get("Retry-After") || "", 10);
      throw new ApiError(res.status, data, Number.isFinite(ra) ? ra : null);
    }
    return data;
  }

  function bearer() {
    return s.key || (s.tokens && s.tokens.access) || null;
  }

  // A call with the session's credential. An account whose access token is
  // refused gets one refresh and one retry: a 401 means the server did
  // nothing, so even a POST is safe to send again.
  async function api(method, path, body, headers) {
    const used = bearer();
    try {
      return await call(method, path, body, headers, used);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !s.tokens) throw e;
      // Another call may have refreshed already while this one was out.
      const fresh = s.tokens.access !== used || (await renew());
      if (!fresh || !s.tokens) throw e;
      return call(method, path, body, headers, s.tokens.access);
    }
  }

  function clearTimer() {
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
  }

  // When the access token is to be replaced.
  function due(t) {
    return t.expiresAt - Math.min(EARLY_MS, t.lifetime / 5);
  }

  function schedule() {
    clearTimer();
    if (!s.tokens) return;
    s.timer = setTimeout(() => { renew(); }, Math.max(0, due(s.tokens) - Date.now()));
  }

  function keep(pair) {
    const lifetime = Number(pair.expires_in) * 1000;
    s.tokens = {
      access: pair.access_token,
      refresh: pair.refresh_token,
      expiresAt: Date.now() + lifetime,
      lifetime,
    };
    s.key = null;
    sessionStorage.removeItem(KEY_STORE);
    sessionStorage.setItem(TOKEN_STORE, JSON.stringify(s.tokens));
    schedule();
  }

  // Exchanges the refresh token for a new pair; true when it did. A token
  // the server refuses ends the session (`onLost`); no answer at all is
  // tried again shortly, while the access token may still be good.
  function renew() {
    if (s.renewing) return s.renewing;
    if (!s.tokens) return Promise.resolve(false);
    const refresh = s.tokens.refresh;
    s.renewing = (async () => {
      try {
        keep(await call("POST", "/api/auth/refresh", { refresh_token: refresh }, null, null));
        return true;
      } catch (e) {
        if (s.tokens && s.tokens.refresh === refresh) {
          if (e instanceof ApiError && (e.status === 401 || e.status === 400)) {
            forget();
            if (s.onLost) s.onLost("Your session has ended; sign in again.");
          } else {
            clearTimer();
            s.timer = setTimeout(() => { renew(); }, RETRY_MS);
          }
        }
        return false;
      } finally {
        s.renewing = null;
      }
    })();
    return s.renewing;
  }

  function forget() {
    clearTimer();
    s.key = null;
    s.tokens = null;
    sessionStorage.removeItem(KEY_STORE);
    sessionStorage.removeItem(TOKEN_STORE);
  }

  // What a failed sign-in tells the person, in words.
  function explain(e) {
    if (!(e instanceof ApiError)) return `The server could not be reached (${e.message}).`;
    const wait = e.retryAfter ? ` Try again in ${humanSeconds(e.retryAfter)}.` : " Try again later.";
    switch (e.code) {
      case "invalid_credentials":
        return "Wrong e-mail or password.";
      case "account_locked":
        return "Too many wrong passwords for this account: it is locked for now." + wait;
      case "too_many_auth_failures":
        return "Too many failed sign-ins from this address." + wait;
      case "overloaded":
        return "The server is busy signing people in." + wait;
      default:
        return e.status === 401 ? "That key is not valid." : e.message;
    }
  }

  function humanSeconds(n) {
    if (n < 90) return `${n} s`;
    return `${Math.ceil(n / 60)} minutes`;
  }

  window.OneFlowSession = {
    ApiError,
    api,
    explain,
    // The kind of session: "key", "account" or null.
    kind: () => (s.key ? "key" : s.tokens ? "account" : null),
    useKey(key) {
      forget();
      s.key = key;
      sessionStorage.setItem(KEY_STORE, key);
    },
    async login(email, password) {
      forget();
      keep(await call("POST", "/api/auth/login", { email, password }, null, null));
    },
    renew,
    // A GET whose answer is text, not JSON (a panel's CSV), with the
    // session's credential.
    async text(path) {
      const b = bearer();
      const res = await fetch(path, { headers: b ? { Authorization: `Bearer ${b}` } : {}, cache: "no-store" });
      const body = await res.text();
      if (!res.ok) {
        let data = null;
        try { data = JSON.parse(body); } catch (_) { data = null; }
        throw new ApiError(res.status, data, null);
      }
      return body;
    },
    // Ends the session here at once, and for an account on the server too
    // (its refresh tokens are revoked; the access token runs out by itself).
    end() {
      const t = s.tokens;
      forget();
      if (t) call("POST", "/api/auth/logout", { refresh_token: t.refresh }, null, null).catch(() => {});
    },
    // The session this tab kept, if any; true when there is one.
    restore() {
      const key = sessionStorage.getItem(KEY_STORE);
      if (key) {
        s.key = key;
        return true;
      }
      try {
        const t = JSON.parse(sessionStorage.getItem(TOKEN_STORE) || "null");
        if (t && t.access && t.refresh) {
          s.tokens = t;
          schedule();
          return true;
        }
      } catch (_) {
        sessionStorage.removeItem(TOKEN_STORE);
      }
      return false;
    },
    set onLost(f) { s.onLost = f; },
  };

  // A hidden tab's timers are slowed down: check the token on coming back.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && s.tokens && Date.now() >= due(s.tokens)) renew();
  });
})();
