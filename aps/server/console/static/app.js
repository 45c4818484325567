// The console's live view: polls console/api/live about once a second and draws the charts and
// the tables from what it says. The admin key, when the gateway has one, is kept in this page's
// memory (or, if the operator ticks the box, in this tab's sessionStorage) and sent only here.
"use strict";
(function () {
  const C = window.ApsCharts;
  const POLL_MS = 1000;
  const SPAN_S = 300; // the charts' time axis: five minutes, as much as the gateway keeps
  const $ = (id) => document.getElementById(id);
  const state = {key: sessionStorage.getItem("aps-admin-key") || "", paused: false,
                 history: [], last: null, timer: null};

  // -- formatting: null (not measured yet) shows as a dash -----------------------------------
  const DASH = "–";
  const missing = (v) => v === null || v === undefined || (typeof v === "number" && !isFinite(v));
  const num = (v, digits) => missing(v) ? DASH : Number(v).toFixed(digits || 0);
  const pct = (v) => missing(v) ? DASH : `${(100 * v).toFixed(1)}%`;
  // cents, or up to four places for the small sums of a cheap model: $0.05, $0.0012, $12.50
  const usd = (v) => missing(v) ? DASH : `$${Number(v).toFixed(4).replace(/(\.\d\d\d*?)0+$/, "$1")}`;
  const secs = (v) => missing(v) ? DASH : v < 1 ? `${(1000 * v).toFixed(0)} ms` : `${v.toFixed(2)} s`;
  const clock = (unix) => new Date(unix * 1000).toLocaleTimeString();

  // -- talking to the gateway -------------------------------------------------------------
  async function api(path, options) {
    const o = Object.assign({}, options || {});
    o.headers = Object.assign({}, o.headers || {});
    if (state.key) o.headers.Authorization = `Bearer ${state.key}`;
    if (o.json !== undefined) {
      o.body = JSON.stringify(o.json);
      o.headers["Content-Type"] = "application/json";
      delete o.json;
    }
    const r = await fetch(path, o);
    if (!r.ok) {
      let text = `${r.status} ${r.statusText}`;
      try { text = (await r.json()).error.message || text; } catch (e) { /* not the API's shape */ }
      const err = new Error(text);
      err.status = r.status;
      throw err;
    }
    return r;
  }

  // `from`: "poll" for the poller's own complaint, which it clears once the figures come back
  function message(text, ok, from) {
    const m = $("message");
    m.dataset.from = from || "";
    m.hidden = !text;
    m.textContent = text || "";
    m.classList.toggle("ok", !!ok);
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = `status ${kind || ""}`;
  }

  // -- polling ------------------------------------------------------------------------------
  async function poll() {
    clearTimeout(state.timer);
    if (state.paused) return;
    try {
      // the first call (or the first after a gap) fetches the gateway's history for the charts
      const history = state.history.length ? 3 : 400;
      const view = await (await api(`console/api/live?history=${history}`)).json();
      merge(view.history);
      state.last = view;
      render(view);
      setStatus("live", "live");
      if ($("message").dataset.from === "poll") message("");
    } catch (err) {
      setStatus(err.status === 401 ? "admin key needed" : "error", "error");
      message(err.status === 401 ? `${err.message}: type the gateway's admin key above.`
                                 : `Cannot read the figures: ${err.message}`, false, "poll");
      if (err.status === 401) $("admin-key").focus();
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  function merge(points) {
    const seen = new Set(state.history.map((p) => p.time));
    for (const p of points) if (!seen.has(p.time)) state.history.push(p);
    state.history.sort((a, b) => a.time - b.time);
    const oldest = Date.now() / 1000 - SPAN_S - 10;
    while (state.history.length && state.history[0].time < oldest) state.history.shift();
  }

  // -- drawing --------------------------------------------------------------------------------
  function perTenant(ids, field) {
    return ids.map((id) => ({name: id, colour: C.colour(id),
      points: state.history.map((p) => [p.time, p.tenants[id] ? p.tenants[id][field] : null])}));
  }

  function whole(field, name, colour, dash) {
    return {name, colour, dash, points: state.history.map((p) => [p.time, p[field]])};
  }

  function render(view) {
    const ids = view.tenants.map((t) => t.id); // sorted by the gateway: colours keep their order
    ids.forEach(C.colour);
    // no admin API and no key in use: nothing to type in
    $("key-bar").hidden = !view.admin_api && !state.key;
    $("where").textContent = `${view.model} · policy ${view.policy} · ${view.mode}`;
    $("updated").textContent = `updated ${clock(view.time)}`;
    $("updated").dataset.time = String(view.time);
    for (const w of document.querySelectorAll(".window")) w.textContent = String(view.window_s);
    $("rate-note").textContent = `(last ${view.rate_window_s} s)`;
    C.legend($("legend"), ids);
    renderCharts(view, ids);
    window.ApsTables.render(view, {num, pct, usd, secs, clock});
    document.dispatchEvent(new CustomEvent("aps:live", {detail: view}));
  }

  function renderCharts(view, ids) {
    // the time axis: what there is, from a minute up to the five minutes the gateway keeps
    const now = view.time;
    const oldest = state.history.length ? state.history[0].time : now;
    const span = Math.min(SPAN_S, Math.max(60, Math.ceil((now - oldest) / 30) * 30));
    C.line($("chart-tps"), perTenant(ids, "tokens_per_s"), {now, span});
    C.line($("chart-waiting"), perTenant(ids, "waiting"), {now, span});
    const tenants = view.tenants;
    C.bars($("bars-share"), tenants.map((t) => ({name: t.id, colour: C.colour(t.id), value: t.share,
      mark: t.entitled_share, max: 1, text: `${pct(t.share)} of ${pct(t.entitled_share)}`})),
      "no tenant served yet");
    for (const [kind, box] of [["ttft", "bars-ttft"], ["tpot", "bars-tpot"]]) {
      const top = C.niceMax(Math.max(0, ...tenants.map((t) => t[`${kind}_p99`] || 0)));
      const rows = tenants.filter((t) => !missing(t[`${kind}_p50`])).map((t) => ({
        name: t.id, colour: C.colour(t.id), value: t[`${kind}_p50`], light: t[`${kind}_p99`],
        max: top, text: `${secs(t[`${kind}_p50`])} | ${secs(t[`${kind}_p99`])}`}));
      C.bars($(box), rows, "no request ended in the window");
    }
    C.bars($("bars-budget"), tenants.filter((t) => t.budget).map((t) => ({
      name: t.id, colour: C.colour(t.id), value: t.budget.spent_usd, max: t.budget.budget_usd,
      text: `${usd(t.budget.spent_usd)} of ${usd(t.budget.budget_usd)} / ${t.budget.period}`})),
      "no tenant has a budget");
    C.line($("chart-jain"), [whole("jain", "since start", "#1d2330"),
                             whole("jain_window", `last ${view.window_s} s`, "#1d2330", "5 4")],
           {now, span, min: 0, max: 1});
    const upstream = view.mode === "upstream";
    $("fig-kv").hidden = upstream;
    $("fig-upstreams").hidden = $("fig-inflight").hidden = !upstream;
    if (!upstream) {
      C.line($("chart-kv"), [whole("kv_cache_usage", "KV usage", "#7048e8")],
             {now, span, min: 0, max: 1, format: (v) => `${Math.round(100 * v)}%`});
    } else {
      C.bars($("bars-upstreams"), view.upstreams.map((u) => ({
        name: u.url, colour: u.healthy && u.breaker === "closed" ? "#0ca678" : "#c2255c",
        value: u.in_flight, max: u.max_in_flight,
        text: `${u.healthy ? "healthy" : "DOWN"} · ${u.breaker} · ${u.in_flight}/${u.max_in_flight}`})),
        "no upstream server");
      C.line($("chart-inflight"), [whole("in_flight", "in flight", "#1098ad")], {now, span});
    }
    C.line($("chart-batch"), [whole("running", "running", "#2563eb"),
                              whole("batch_mean", "mean batch", "#2563eb", "5 4"),
                              whole("waiting", "waiting", "#e8590c", "2 3")], {now, span});
    const a = view.autoscale;
    C.line($("chart-desired"), [whole("desired", "desired replicas", "#0ca678")],
           {now, span, min: 0, max: C.niceMax(Math.max(a.max, 1))});
    $("autoscale-reason").textContent =
      `${a.desired} desired (now ${a.replicas}, between ${a.min} and ${a.max}): ${a.signal}; ${a.reason}`;
    const rejected = [];
    for (const t of tenants) {
      for (const [reason, n] of Object.entries(t.rejected)) {
        rejected.push({name: `${t.id} · ${reason}`, colour: C.colour(t.id), value: n,
                       text: `${n} (${t.rejected_window[reason] || 0} recent)`});
      }
    }
    const most = C.niceMax(Math.max(0, ...rejected.map((r) => r.value)));
    for (const r of rejected) r.max = most;
    C.bars($("bars-rejected"), rejected, "none refused");
  }

  // -- the header's controls -------------------------------------------------------------------
  function show(which) {
    for (const v of ["charts", "table", "admin"]) {
      $(`${v}-view`).hidden = v !== which;
      $(`show-${v}`).classList.toggle("on", v === which);
    }
    if (which === "admin") document.dispatchEvent(new Event("aps:admin"));
  }

  function useKey() {
    state.key = $("admin-key").value.trim();
    if ($("keep-key").checked && state.key) sessionStorage.setItem("aps-admin-key", state.key);
    else sessionStorage.removeItem("aps-admin-key");
    state.history = [];
    poll();
    if (!$("admin-view").hidden) document.dispatchEvent(new Event("aps:admin"));
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("admin-key").value = state.key;
    $("keep-key").checked = !!sessionStorage.getItem("aps-admin-key");
    $("use-key").addEventListener("click", useKey);
    $("admin-key").addEventListener("keydown", (e) => { if (e.key === "Enter") useKey(); });
    $("forget-key").addEventListener("click", () => {
      $("admin-key").value = "";
      $("keep-key").checked = false;
      useKey();
    });
    for (const v of ["charts", "table", "admin"]) $(`show-${v}`).addEventListener("click", () => show(v));
    $("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause").textContent = state.paused ? "Resume" : "Pause";
      if (state.paused) setStatus("paused", "paused"); else poll();
    });
    poll();
  });

  window.ApsConsole = {api, message, state, format: {num, pct, usd, secs, clock, missing}};
})();
