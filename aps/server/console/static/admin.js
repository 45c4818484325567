// The operator's actions: tenants, keys and usage, each a call to the gateway's admin API
// (/admin, the same routes `curl` and the CLI use). The page checks nothing the API checks: it
// sends what was typed and shows the API's answer, error messages included.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const T = window.ApsTables;
  const K = window.ApsConsole;
  const INTEGERS = new Set(["bid", "max_bid", "max_concurrent"]);
  // left empty on an edit: omitted (kept as it is) for these, null (no limit) for the others
  const KEPT = new Set(["weight", "bid", "over_limit", "budget_period", "over_budget"]);
  const TENANT_COLUMNS = ["weight", "bid", "max_bid", "token_rate", "token_burst", "request_rate",
    "request_burst", "max_concurrent", "over_limit", "max_queue_s", "budget_usd",
    "budget_period", "over_budget"];
  let editing = null; // the id of the tenant in the form, or null for a new one

  const button = (text, onClick) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  };
  const shown = (v) => v === null || v === undefined ? "–" : String(v);
  const when = (unix) => unix ? new Date(unix * 1000).toISOString().replace(".000", "") : "–";

  async function act(what, run) {
    try {
      await run();
      if (what) K.message(what, true);
    } catch (err) {
      K.message(err.message);
    }
  }

  // -- tenants -----------------------------------------------------------------------------------
  async function loadTenants() {
    const tenants = (await (await K.api("admin/tenants")).json()).data;
    const table = $("admin-tenants");
    T.head(table, ["", "tenant", ...TENANT_COLUMNS]);
    table.tBodies[0].replaceChildren(...tenants.map((t) => {
      const tr = document.createElement("tr");
      tr.dataset.tenant = t.id;
      const td = document.createElement("td");
      td.appendChild(button("Edit", () => edit(t)));
      tr.append(td, T.cell(t.id, {field: "id"}));
      for (const c of TENANT_COLUMNS) tr.appendChild(T.cell(shown(t[c]), {field: c}));
      return tr;
    }));
    for (const [id, all] of [["key-tenant", false], ["usage-tenant", true]]) {
      const select = $(id), before = select.value;
      const options = tenants.map((t) => new Option(t.id, t.id));
      if (all) options.unshift(new Option("(all)", ""));
      select.replaceChildren(...options);
      if ([...select.options].some((o) => o.value === before)) select.value = before;
    }
  }

  function edit(t) {
    editing = t ? t.id : null;
    const form = $("tenant-form");
    form.reset();
    form.elements.id.readOnly = !!t;
    $("tenant-form-title").textContent = t ? `Edit tenant ${t.id}` : "New tenant";
    $("tenant-save").textContent = t ? "Save changes" : "Create tenant";
    if (t) {
      form.elements.id.value = t.id;
      for (const c of TENANT_COLUMNS) form.elements[c].value = t[c] === null ? "" : String(t[c]);
      if (t.max_bid === t.bid) form.elements.max_bid.value = ""; // the API says bid for "none"
      form.scrollIntoView({block: "nearest"});
    }
  }

  function tenantBody(form) {
    const body = {};
    for (const name of TENANT_COLUMNS) {
      const text = form.elements[name].value.trim();
      if (text === "") {
        if (editing !== null && !KEPT.has(name)) body[name] = null;
        continue;
      }
      if (form.elements[name].tagName === "SELECT") { body[name] = text; continue; }
      const value = Number(text);
      if (!isFinite(value) || (INTEGERS.has(name) && !Number.isInteger(value))) {
        throw new Error(`${name}: ${JSON.stringify(text)} is not ${INTEGERS.has(name) ? "a whole number" : "a number"}`);
      }
      body[name] = value;
    }
    return body;
  }

  async function saveTenant(event) {
    event.preventDefault();
    const form = $("tenant-form"), id = form.elements.id.value.trim();
    await act(null, async () => {
      const body = tenantBody(form);
      const path = `admin/tenants/${encodeURIComponent(id)}`;
      await K.api(path, {method: editing === null ? "PUT" : "PATCH", json: body});
      K.message(editing === null ? `Tenant ${id} created.` : `Tenant ${id} saved.`, true);
      edit(null);
      await load();
    });
  }

  // -- keys ----------------------------------------------------------------------------------------
  async function loadKeys() {
    const keys = (await (await K.api("admin/keys")).json()).data;
    const table = $("admin-keys");
    T.head(table, ["", "prefix", "tenant", "created", "expires", "revoked", "models", "max_bid"]);
    table.tBodies[0].replaceChildren(...keys.map((k) => {
      const tr = document.createElement("tr");
      tr.dataset.prefix = k.prefix;
      const td = document.createElement("td");
      if (!k.revoked_at) td.appendChild(button("Revoke", () => revoke(k)));
      tr.append(td, T.cell(k.prefix), T.cell(k.tenant_id, {field: "tenant"}),
                T.cell(when(k.created_at)), T.cell(when(k.expires_at)),
                T.cell(when(k.revoked_at), {field: "revoked"}),
                T.cell(k.models ? k.models.join(", ") : "any"), T.cell(shown(k.max_bid)));
      return tr;
    }));
  }

  async function createKey(event) {
    event.preventDefault();
    const form = $("key-form"), tenant = form.elements.tenant.value;
    await act(null, async () => {
      if (!tenant) throw new Error("create a tenant first");
      const body = {};
      const expires = form.elements.expires.value.trim();
      const models = form.elements.models.value.split(",").map((m) => m.trim()).filter(Boolean);
      const maxBid = form.elements.max_bid.value.trim();
      if (expires) body.expires = expires;
      if (models.length) body.models = models;
      if (maxBid) body.max_bid = Number(maxBid);
      const made = await (await K.api(`admin/tenants/${encodeURIComponent(tenant)}/keys`,
                                      {method: "POST", json: body})).json();
      $("new-key-value").textContent = made.key;
      $("new-key").hidden = false;
      form.reset();
      form.elements.tenant.value = tenant;
      K.message(`A key for ${tenant} was created: store it now, it is not shown again.`, true);
      await loadKeys();
    });
  }

  async function revoke(k) {
    if (!window.confirm(`Revoke key ${k.prefix} of ${k.tenant_id}? Requests with it fail at once.`)) return;
    await act(`Key ${k.prefix} revoked.`, async () => {
      await K.api(`admin/keys/${encodeURIComponent(k.prefix)}`, {method: "DELETE"});
      await loadKeys();
    });
  }

  // -- usage ---------------------------------------------------------------------------------------
  function usageQuery(extra) {
    const form = $("usage-form"), q = new URLSearchParams();
    for (const name of ["tenant", "since", "until", "limit"]) {
      const v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    return q;
  }

  function fill(table, rows, empty) {
    const names = rows.length ? Object.keys(rows[0]) : [empty];
    T.head(table, names);
    table.tBodies[0].replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      for (const n of names) {
        const v = r[n];
        const text = typeof v === "number" && !Number.isInteger(v) ? v.toFixed(6).replace(/0+$/, "") : shown(v);
        tr.appendChild(T.cell(text, {field: n}));
      }
      return tr;
    }));
  }

  async function showUsage(event) {
    if (event) event.preventDefault();
    await act(null, async () => {
      const q = usageQuery();
      const totals = new URLSearchParams(q);
      totals.delete("limit");
      fill($("usage-totals"), (await (await K.api(`admin/usage/summary?${totals}`)).json()).data,
           "no usage in this range");
      fill($("usage-rows"), (await (await K.api(`admin/usage?${q}`)).json()).data,
           "no requests in this range");
    });
  }

  async function exportUsage() {
    await act("Usage exported as CSV.", async () => {
      const q = usageQuery({format: "csv"});
      q.delete("limit"); // the export: every row in the range
      const blob = await (await K.api(`admin/usage?${q}`)).blob();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `aps-usage-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.csv`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    });
  }

  // -- the tab ---------------------------------------------------------------------------------------
  async function load() {
    const last = K.state.last;
    const off = last !== null && !last.admin_api;
    $("admin-off").hidden = !off;
    if (off) return;
    await act(null, async () => { await loadTenants(); await loadKeys(); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("tenant-form").addEventListener("submit", saveTenant);
    $("tenant-new").addEventListener("click", () => edit(null));
    $("key-form").addEventListener("submit", createKey);
    $("new-key-done").addEventListener("click", () => {
      $("new-key-value").textContent = "";
      $("new-key").hidden = true;
    });
    $("usage-form").addEventListener("submit", showUsage);
    $("usage-export").addEventListener("click", exportUsage);
  });
  document.addEventListener("aps:admin", load);
})();
