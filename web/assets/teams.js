// A team on view (docs/auth.md, "Teams"): its wallet in the cards, its
// budget windows in the budget panel, its members with their roles, and its
// requests. What the person's role in the team does not allow is hidden or
// greyed out; the server refuses it anyway, this only spares the click.
"use strict";

(function () {
  const money = window.OneFlowMoney;
  const budgets = window.OneFlowBudget;
  const { api } = window.OneFlowSession;
  const { $, row, fillBody, button, setMsg, when } = window.OneFlowUi;
  const fmt = money.format;
  const TEAM_ROLES = ["team_admin", "member", "viewer", "billing"];
  // Credential roles that may change things (the `manage` permission).
  const MANAGERS = ["admin", "team_admin", "member"];

  const t = {
    id: null,
    team: null,
    page: { cursors: [null], index: 0, next: null },
    onChange: () => {},
  };

  const path = (id, rest) => `/api/teams/${encodeURIComponent(id)}${rest || ""}`;

  // What the signed-in person may do in `team`.
  function powers(team, me) {
    const role = team.members[me.user_id] || null;
    const manage = MANAGERS.includes(me.role);
    return {
      role,
      // Members, keys for others and the budget: the team's admins (and
      // the broker's).
      administer: manage && (me.role === "admin" || role === "team_admin"),
      // A key of one's own, at most one's role in the team.
      ownKey: manage && role !== null,
      // A plain member sees only their own requests.
      seesAll: me.role === "admin" || (role !== null && role !== "member"),
    };
  }

  async function list() {
    const data = await api("GET", "/api/teams");
    return data.teams;
  }

  // Re-reads the team, its wallet and a page of its requests and shows
  // them; answers the wallet (the budget form saves against it).
  async function refresh(id, me, editing) {
    if (t.id !== id) {
      t.id = id;
      resetPaging();
    }
    const limit = $("t-limit").value;
    const cursor = t.page.cursors[t.page.index];
    const q = `?limit=${limit}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const [team, wallet, page] = await Promise.all([
      api("GET", path(id)),
      api("GET", path(id, "/wallet")),
      api("GET", path(id, `/requests${q}`)),
    ]);
    if (t.id !== id) return wallet; // the person chose something else meanwhile
    t.team = team;
    const p = powers(team, me);
    $("balance").textContent = fmt(wallet.balance);
    $("available").textContent = fmt(wallet.available);
    $("held").textContent = fmt(wallet.held);
    $("balance").dataset.micros = wallet.balance.toString();
    budgets.render(wallet, editing, p.administer);
    $("team-name").textContent = team.name;
    $("team-id").textContent = team.id;
    $("team-role").textContent = p.role ? `your role: ${p.role}` : "you are not a member (administrator)";
    renderMembers(team, me, p);
    renderRequests(page, p);
    return wallet;
  }

  function renderMembers(team, me, p) {
    const rows = Object.entries(team.members).map(([uid, role]) => {
      const who = uid === me.user_id ? `${uid} (you)` : uid;
      const remove = p.administer
        ? button("Remove", () => change("DELETE", uid))
        : "";
      return row([who, role, remove], { "data-member": uid, "data-role": role });
    });
    fillBody($("team-members"), rows, "no members", 3);
    $("member-form").hidden = !p.administer;
    $("team-key-btn").hidden = !p.ownKey;
  }

  function renderRequests(page, p) {
    t.page.next = page.next_cursor || null;
    const rows = page.items.map((r) => {
      const tr = row([
        when(r.created_at), r.id, r.member || "", r.model, r.provider || "", r.status,
        fmt(r.cost), r.latency_ms !== undefined ? `${r.latency_ms} ms` : "", r.prompt_preview || "",
      ], { "data-request-id": r.id });
      tr.cells[5].className = r.status === "succeeded" ? "ok" : "bad";
      if (r.error) tr.title = r.error;
      return tr;
    });
    fillBody($("team-requests"), rows, "no requests yet", 9);
    $("team-requests-note").textContent = p.seesAll ? "all members'" : "your own (members see only theirs)";
    $("t-page").textContent = `page ${t.page.index + 1}`;
    $("t-prev").disabled = t.page.index === 0;
    $("t-next").disabled = !t.page.next;
  }

  // Sets (PUT) or removes (DELETE) a member, then re-reads the page.
  async function change(method, uid, role) {
    const msg = $("team-msg");
    try {
      const p = path(t.id, `/members/${encodeURIComponent(uid)}`);
      await api(method, p, method === "PUT" ? { role } : undefined);
      setMsg(msg, method === "PUT" ? `${uid} is now ${role}.` : `${uid} was removed; their team keys are revoked.`);
      t.onChange();
    } catch (e) {
      setMsg(msg, e.message, true);
    }
  }

  // A key that spends from the team as the person: shown this once.
  async function newKey() {
    const out = $("team-key-out");
    try {
      const k = await api("POST", path(t.id, "/keys"), {});
      out.textContent = `New team key (${k.role}), shown only now: ${k.api_key}`;
      out.classList.remove("error");
    } catch (e) {
      out.textContent = e.message;
      out.classList.add("error");
    }
  }

  function resetPaging() {
    t.page = { cursors: [null], index: 0, next: null };
  }

  function init(onChange) {
    t.onChange = onChange;
    const sel = $("member-role");
    sel.replaceChildren(...TEAM_ROLES.map((r) => {
      const o = document.createElement("option");
      o.value = r;
      o.textContent = r;
      return o;
    }));
    sel.value = "member";
    $("member-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      change("PUT", $("member-id").value.trim(), sel.value);
    });
    $("team-key-btn").addEventListener("click", newKey);
    $("t-prev").addEventListener("click", () => {
      if (t.page.index > 0) t.page.index -= 1;
      t.onChange();
    });
    $("t-next").addEventListener("click", () => {
      if (!t.page.next) return;
      t.page.cursors = t.page.cursors.slice(0, t.page.index + 1);
      t.page.cursors.push(t.page.next);
      t.page.index += 1;
      t.onChange();
    });
    $("t-limit").addEventListener("change", () => { resetPaging(); t.onChange(); });
  }

  // Nothing of a team stays on the page after signing out.
  function clear() {
    Object.assign(t, { id: null, team: null });
    resetPaging();
    for (const id of ["team-members", "team-requests"]) $(id).tBodies[0].replaceChildren();
    for (const id of ["team-name", "team-id", "team-role", "team-key-out"]) $(id).textContent = "";
    setMsg($("team-msg"), "");
    $("member-form").reset();
  }

  window.OneFlowTeams = { init, list, refresh, clear, resetPaging, powers };
})();
