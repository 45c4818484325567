// The console's table view: the same figures as the charts, as numbers. Each tenant's cell says
// which tenant and figure it shows (data-tenant, data-field), so a reader or a test can find it.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  function cell(text, attrs) {
    const td = document.createElement("td");
    td.textContent = text;
    if (!/^[-–$\d.]/.test(text)) td.className = "text"; // words read from the left
    for (const [k, v] of Object.entries(attrs || {})) td.dataset[k] = v;
    return td;
  }

  function head(table, names) {
    const tr = document.createElement("tr");
    for (const n of names) {
      const th = document.createElement("th");
      th.textContent = n;
      tr.appendChild(th);
    }
    table.tHead.replaceChildren(tr);
  }

  function tenantColumns(f) {
    const total = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    return [
      ["weight", "weight", (t) => f.num(t.weight, 2)],
      ["bid", "bid", (t) => t.max_bid === t.bid ? f.num(t.bid) : `${t.bid} (max ${t.max_bid})`],
      ["waiting", "waiting", (t) => f.num(t.waiting)],
      ["running", "running", (t) => f.num(t.running)],
      ["throttled", "throttled", (t) => f.num(t.throttled)],
      ["tokens/s", "tokens_per_s", (t) => f.num(t.tokens_per_s, 1)],
      ["tokens served", "service_tokens", (t) => f.num(t.service_tokens)],
      ["share", "share", (t) => f.pct(t.share)],
      ["entitled", "entitled_share", (t) => f.pct(t.entitled_share)],
      ["TTFT p50", "ttft_p50", (t) => f.secs(t.ttft_p50)],
      ["TTFT p99", "ttft_p99", (t) => f.secs(t.ttft_p99)],
      ["TPOT p50", "tpot_p50", (t) => f.secs(t.tpot_p50)],
      ["TPOT p99", "tpot_p99", (t) => f.secs(t.tpot_p99)],
      ["spent", "spent_usd", (t) => t.budget ? f.usd(t.budget.spent_usd) : "–"],
      ["budget", "budget_usd", (t) => t.budget ? `${f.usd(t.budget.budget_usd)} / ${t.budget.period}` : "none"],
      ["refused", "rejected", (t) => {
        const reasons = Object.entries(t.rejected).map(([reason, n]) => `${reason} ${n}`);
        return reasons.length ? `${total(t.rejected)} (${reasons.join(", ")})` : "0";
      }],
    ];
  }

  function render(view, f) {
    const columns = tenantColumns(f);
    const tenants = $("tenant-table");
    head(tenants, ["tenant", ...columns.map((c) => c[0])]);
    tenants.tBodies[0].replaceChildren(...view.tenants.map((t) => {
      const tr = document.createElement("tr");
      tr.dataset.tenant = t.id;
      tr.appendChild(cell(t.id, {tenant: t.id, field: "id"}));
      for (const [, field, show] of columns) tr.appendChild(cell(show(t), {tenant: t.id, field}));
      return tr;
    }));

    const w = view.whole, s = view.summary, a = view.autoscale;
    const rows = [
      ["mode", view.mode], ["model", view.model], ["policy", view.policy],
      ["Jain's index, since start", f.num(w.jain, 3)],
      [`Jain's index, last ${view.window_s} s`, f.num(w.jain_window, 3)],
      [`tokens/s, last ${view.rate_window_s} s`, f.num(w.tokens_per_s, 1)],
      ["running", f.num(w.running)], ["waiting", f.num(w.waiting)],
      ["throttled", f.num(w.throttled)], ["max_num_seqs", f.num(w.max_num_seqs)],
      [`mean batch, last ${view.window_s} s`, f.num(w.batch_mean, 1)],
      ["KV cache usage", f.pct(w.kv_cache_usage)],
      ["active tenants", f.num(w.active_tenants)],
      ["desired replicas", `${a.desired} (now ${a.replicas})`],
      ["autoscaling signal", `${a.signal}: ${a.reason}`],
      ["uptime", f.secs(s.uptime_s)],
      ["throughput since start, tokens/s", f.num(s.throughput_tokens_per_s, 1)],
      ["backend busy", f.pct(s.gpu_utilization)],
      ["cost per 1M tokens", f.usd(s.cost_per_1m_tokens_usd)],
      ["ledger rows pending", f.num(s.held.ledger_pending_rows)],
    ];
    $("whole-table").tBodies[0].replaceChildren(...rows.map(([name, value]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = name;
      tr.append(th, cell(value, {field: name}));
      return tr;
    }));

    const ups = view.upstreams;
    $("upstream-heading").hidden = $("upstream-table").hidden = !ups;
    if (ups) {
      const table = $("upstream-table");
      head(table, ["upstream", "model", "health", "breaker", "in flight", "tokens in flight", "errors"]);
      table.tBodies[0].replaceChildren(...ups.map((u) => {
        const tr = document.createElement("tr");
        tr.append(cell(u.url), cell(u.model), cell(u.healthy ? "healthy" : "down"), cell(u.breaker),
                  cell(`${u.in_flight} / ${u.max_in_flight}`),
                  cell(`${u.tokens_in_flight} / ${u.max_tokens_in_flight}`), cell(String(u.errors)));
        return tr;
      }));
    }
  }

  window.ApsTables = {render, head, cell};
})();
