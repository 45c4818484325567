// The console's charts, drawn by hand: SVG line charts over time and rows of horizontal bars.
// Every text goes in through textContent, never as markup.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 460, H = 170, LEFT = 44, RIGHT = 8, TOP = 8, BOTTOM = 20;
  // Ten colours that stay apart; a tenant keeps the one it got first on every chart.
  const PALETTE = ["#2563eb", "#e8590c", "#0ca678", "#c2255c", "#7048e8", "#a67c00",
                   "#1098ad", "#5c940d", "#d6336c", "#495057"];
  const assigned = new Map();

  function colour(name) {
    if (!assigned.has(name)) assigned.set(name, PALETTE[assigned.size % PALETTE.length]);
    return assigned.get(name);
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function short(value) {
    if (value === null || value === undefined || !isFinite(value)) return "";
    const a = Math.abs(value);
    if (a >= 1e6) return (value / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (value / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    if (a >= 10 || value === Math.round(value)) return String(Math.round(value));
    return value.toFixed(a >= 1 ? 1 : 2);
  }

  // series: [{name, colour, dash, points: [[unixSeconds, value|null], ...]}]
  // options: {span: seconds shown, min, max (fixed y range), format(value)}
  function line(container, series, options) {
    const o = options || {};
    const span = o.span || 300;
    const now = o.now || Date.now() / 1000;
    let top = o.max;
    if (top === undefined) {
      let seen = 0;
      for (const s of series) for (const [, v] of s.points) if (v !== null && v > seen) seen = v;
      top = niceMax(seen);
    }
    const bottom = o.min || 0;
    const x = (t) => LEFT + (W - LEFT - RIGHT) * (1 - (now - t) / span);
    const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - (v - bottom) / (top - bottom || 1));
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
    const format = o.format || short;
    for (let i = 0; i <= 4; i++) {
      const v = bottom + (top - bottom) * i / 4;
      el("line", {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid-line"}, svg);
      const label = el("text", {x: LEFT - 4, y: y(v) + 3, "text-anchor": "end"}, svg);
      label.textContent = format(v);
    }
    const ago = (s) => s >= 120 ? `-${Math.round(s / 6) / 10}m` : `-${Math.round(s)}s`;
    for (const [t, text] of [[now - span, ago(span)], [now - span / 2, ago(span / 2)],
                             [now, "now"]]) {
      const label = el("text", {x: x(t), y: H - 5, "text-anchor": t === now ? "end" : "middle"}, svg);
      label.textContent = text;
    }
    let drawn = 0;
    for (const s of series) {
      let path = "", pen = false;
      for (const [t, v] of s.points) {
        if (now - t > span || v === null || v === undefined || !isFinite(v)) { pen = false; continue; }
        path += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(Math.min(top, Math.max(bottom, v))).toFixed(1)}`;
        pen = true;
      }
      if (!path) continue;
      drawn++;
      const attrs = {d: path, fill: "none", stroke: s.colour, "stroke-width": 1.8,
                     "stroke-linejoin": "round"};
      if (s.dash) attrs["stroke-dasharray"] = s.dash;
      el("path", attrs, svg).appendChild(el("title")).textContent = s.name;
    }
    if (!drawn) {
      const text = el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"}, svg);
      text.textContent = "no data yet";
    }
    container.replaceChildren(svg);
  }

  // rows: [{name, colour, value, light (a second, lighter value), mark (a tick), max, text}]
  function bars(container, rows, empty) {
    const out = [];
    for (const r of rows) {
      const row = document.createElement("div");
      row.className = "bar-row";
      const name = document.createElement("span");
      name.className = "name";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = r.colour || "#888";
      name.append(swatch, document.createTextNode(r.name));
      name.title = r.name;
      const track = document.createElement("div");
      track.className = "track";
      const max = r.max || 1;
      const pct = (v) => `${Math.max(0, Math.min(100, 100 * v / max)).toFixed(2)}%`;
      if (r.light !== undefined && r.light !== null) {
        const light = document.createElement("div");
        light.className = "fill light";
        light.style.width = pct(r.light);
        light.style.background = r.colour || "#888";
        track.appendChild(light);
      }
      if (r.value !== undefined && r.value !== null) {
        const fill = document.createElement("div");
        fill.className = "fill";
        fill.style.width = pct(r.value);
        fill.style.background = r.colour || "#888";
        track.appendChild(fill);
      }
      if (r.mark !== undefined && r.mark !== null) {
        const mark = document.createElement("div");
        mark.className = "mark";
        mark.style.left = pct(r.mark);
        track.appendChild(mark);
      }
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = r.text || "";
      row.append(name, track, value);
      out.push(row);
    }
    if (!out.length) {
      const none = document.createElement("p");
      none.className = "muted small";
      none.textContent = empty || "nothing to show";
      out.push(none);
    }
    container.replaceChildren(...out);
  }

  // One swatch and name per tenant, above the charts.
  function legend(container, names) {
    container.replaceChildren(...names.map((name) => {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(name);
      item.append(swatch, document.createTextNode(name));
      return item;
    }));
  }

  window.ApsCharts = {colour, line, bars, legend, niceMax, short};
})();
