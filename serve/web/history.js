// meterpipe page, history view: bars per day of a month and per month of a year from the
// history database (/api/history/{meter}?from=&to=&resolution=day|month|minute; serve/
// history_api.h), import up, export down (or gas, or cost); a click on a day shows its minute
// curve. Adds its own card to the page; plain DOM and SVG like app.js.
"use strict";
(function () {
  const ns = "http://www.w3.org/2000/svg";
  const hs = { view: "month", what: "energy", year: 0, month: 0, day: null, meter: null, rows: [] };
  const pad2 = (n) => String(n).padStart(2, "0");
  const iso = (y, m, d) => y + "-" + pad2(m) + "-" + pad2(d);
  const lastDay = (y, m) => new Date(y, m, 0).getDate();
  const num = (v) => (v === null || v === undefined ? 0 : v);

  function card() {
    const sec = document.createElement("section");
    sec.className = "card wide";
    sec.id = "history-card";
    sec.innerHTML =
      '<div class="chart-head"><h2>History <span id="hist-title" class="small"></span></h2>' +
      '<div class="tabs">' +
      '<button id="hist-prev" class="tab" aria-label="previous">‹</button>' +
      '<button id="hist-month" class="tab active" data-view="month">month</button>' +
      '<button id="hist-year" class="tab" data-view="year">year</button>' +
      '<button id="hist-next" class="tab" aria-label="next">›</button></div></div>' +
      '<div class="tabs small" id="hist-what">' +
      '<button class="tab active" data-what="energy">kWh</button>' +
      '<button class="tab" data-what="gas">gas m³</button>' +
      '<button class="tab" data-what="cost">cost</button></div>' +
      '<svg id="hist-chart" class="chart" data-bars="0" role="img" aria-label="history"></svg>' +
      '<div class="legend small" id="hist-legend"></div>';
    const main = document.querySelector("main");
    main.insertBefore(sec, main.querySelector("section.card.wide").nextSibling);
  }

  function svgEl(svg, tag, attrs, text) {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  }

  function imp(r) {
    return r.energy_import_kwh !== undefined && r.energy_import_t1_kwh === undefined
      ? num(r.energy_import_kwh) : num(r.energy_import_t1_kwh) + num(r.energy_import_t2_kwh);
  }
  function exp(r) {
    return r.energy_export_kwh !== undefined && r.energy_export_t1_kwh === undefined
      ? num(r.energy_export_kwh) : num(r.energy_export_t1_kwh) + num(r.energy_export_t2_kwh);
  }

  function range() {
    if (hs.view === "day") return [hs.day, hs.day, "minute"];
    if (hs.view === "year") return [iso(hs.year, 1, 1), iso(hs.year, 12, 31), "month"];
    return [iso(hs.year, hs.month, 1), iso(hs.year, hs.month, lastDay(hs.year, hs.month)), "day"];
  }

  async function load() {
    if (!hs.meter) {
      const sel = document.getElementById("meter");
      hs.meter = sel && sel.value ? sel.value : null;
      if (!hs.meter) {
        try {
          const last = await (await fetch("/api/last", { cache: "no-store" })).json();
          hs.meter = Object.keys(last.meters || last)[0] || null;
        } catch (e) { console.warn(e); }
      }
      if (!hs.meter) return;
    }
    const [from, to, res] = range();
    const url = "/api/history/" + encodeURIComponent(hs.meter) + "?from=" + from + "&to=" + to +
      "&resolution=" + res;
    try {
      const r = await fetch(url, { cache: "no-store" });
      const body = await r.json();
      // rows come as arrays in the order of body.columns
      hs.rows = r.ok ? body.rows.map((a) => Object.fromEntries(body.columns.map((c, i) => [c, a[i]]))) : [];
      hs.currency = body.currency || "";
      hs.error = r.ok ? "" : body.error + (body.reason ? ": " + body.reason : "");
    } catch (e) {
      hs.rows = [];
      hs.error = String(e);
    }
    render();
  }

  function render() {
    const svg = document.getElementById("hist-chart");
    const W = Math.max(svg.clientWidth || 600, 200), H = Math.max(svg.clientHeight || 240, 120);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.textContent = "";
    const title = document.getElementById("hist-title");
    const legend = document.getElementById("hist-legend");
    const [from] = range();
    title.textContent = hs.view === "year" ? String(hs.year) : hs.view === "day" ? hs.day : from.slice(0, 7);
    if (hs.view === "day") return renderDay(svg, W, H, legend);
    const L = 46, R = 6, T = 8, B = 20;
    const slots = hs.view === "year" ? 12 : lastDay(hs.year, hs.month);
    const key = (r) => hs.view === "year" ? Number(r.time.slice(5, 7)) : Number(r.time.slice(8, 10));
    const up = (r) => hs.what === "gas" ? num(r.gas_m3) : hs.what === "cost" ? Math.max(num(r.cost), 0) : imp(r);
    const down = (r) => hs.what === "energy" ? exp(r) : hs.what === "cost" ? Math.max(-num(r.cost), 0) : 0;
    let hi = 0, lo = 0, sumUp = 0, sumDown = 0;
    for (const r of hs.rows) {
      hi = Math.max(hi, up(r)); lo = Math.max(lo, down(r)); sumUp += up(r); sumDown += down(r);
    }
    if (hi + lo === 0) hi = 1;
    const y0 = T + hi / (hi + lo) * (H - T - B);
    const scale = (H - T - B) / (hi + lo);
    const bw = (W - L - R) / slots;
    svgEl(svg, "line", { class: "zero", x1: L, y1: y0, x2: W - R, y2: y0 });
    svgEl(svg, "text", { x: L - 4, y: T + 8, "text-anchor": "end" }, hi.toFixed(hi < 10 ? 1 : 0));
    if (lo > 0) svgEl(svg, "text", { x: L - 4, y: H - B, "text-anchor": "end" }, "-" + lo.toFixed(lo < 10 ? 1 : 0));
    const every = W < 520 ? (hs.view === "year" ? 2 : 5) : (hs.view === "year" ? 1 : 2);
    for (let i = 1; i <= slots; i += every)
      svgEl(svg, "text", { x: L + (i - 0.5) * bw, y: H - 5, "text-anchor": "middle" }, String(i));
    let bars = 0;
    for (const r of hs.rows) {
      const x = L + (key(r) - 1) * bw + bw * 0.12, w = bw * 0.76;
      const tip = r.time + ": " + (hs.what === "energy" ? imp(r).toFixed(2) + " kWh in, " + exp(r).toFixed(2) + " kWh out"
        : hs.what === "gas" ? num(r.gas_m3).toFixed(3) + " m³" : num(r.cost).toFixed(2) + " " + hs.currency) +
        (r.estimated ? " (estimated)" : "");
      const g = svgEl(svg, "g", { class: "bar", "data-time": r.time });
      if (up(r) > 0) {
        const b = document.createElementNS(ns, "rect");
        for (const [k, v] of Object.entries({ x, y: y0 - up(r) * scale, width: w, height: up(r) * scale,
          fill: hs.what === "gas" ? "var(--muted)" : "var(--imp)", "fill-opacity": r.estimated ? "0.4" : "0.8" }))
          b.setAttribute(k, v);
        g.append(b);
      }
      if (down(r) > 0) {
        const b = document.createElementNS(ns, "rect");
        for (const [k, v] of Object.entries({ x, y: y0, width: w, height: down(r) * scale, fill: "var(--exp)",
          "fill-opacity": r.estimated ? "0.4" : "0.8" }))
          b.setAttribute(k, v);
        g.append(b);
      }
      const t = document.createElementNS(ns, "title"); t.textContent = tip; g.append(t);
      g.style.cursor = "pointer";
      g.addEventListener("click", () => {
        if (hs.view === "year") { hs.view = "month"; hs.month = key(r); } else { hs.view = "day"; hs.day = r.time; }
        load();
      });
      bars++;
    }
    svg.dataset.bars = String(bars);
    const unit = hs.what === "gas" ? " m³" : hs.what === "cost" ? " " + hs.currency : " kWh";
    legend.textContent = hs.error ? hs.error : !bars ? "no history for this period" :
      (hs.what === "energy" ? "import " + sumUp.toFixed(1) + " kWh · export " + sumDown.toFixed(1) + " kWh"
        : "total " + (sumUp - sumDown).toFixed(2) + unit) + " · click a bar for " + (hs.view === "year" ? "its month" : "its day");
  }

  function renderDay(svg, W, H, legend) {
    const L = 46, R = 6, T = 8, B = 20;
    const pts = hs.rows.filter((r) => r.power_net_w !== null && r.power_net_w !== undefined);
    let lo = 0, hi = 0;
    for (const p of pts) { lo = Math.min(lo, num(p.power_net_min_w)); hi = Math.max(hi, num(p.power_net_max_w)); }
    if (hi - lo < 100) { hi += 50; lo -= 50; }
    const t0 = new Date(hs.day + "T00:00").getTime(), span = 86400e3;
    const x = (t) => L + (t - t0) / span * (W - L - R);
    const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
    svgEl(svg, "line", { class: "zero", x1: L, y1: y(0), x2: W - R, y2: y(0) });
    svgEl(svg, "text", { x: L - 4, y: y(hi) + 10, "text-anchor": "end" }, Math.round(hi) + " W");
    svgEl(svg, "text", { x: L - 4, y: y(lo), "text-anchor": "end" }, Math.round(lo) + " W");
    for (let h = 0; h <= 24; h += W < 520 ? 6 : 3)
      svgEl(svg, "text", { x: x(t0 + h * 3600e3), y: H - 5, "text-anchor": h === 0 ? "start" : h === 24 ? "end" : "middle" }, pad2(h) + ":00");
    let d = "";
    for (const p of pts) d += (d ? "L" : "M") + x(Date.parse(p.time)).toFixed(1) + "," + y(p.power_net_w).toFixed(1);
    if (d) svgEl(svg, "path", { class: "line", d });
    svg.dataset.bars = String(pts.length);
    legend.textContent = hs.error ? hs.error : pts.length + " minutes of net power (average per minute) · ‹ back to the month";
  }

  function wire() {
    card();
    const now = new Date();
    hs.year = now.getFullYear(); hs.month = now.getMonth() + 1;
    const setView = (v) => {
      hs.view = v;
      document.getElementById("hist-month").classList.toggle("active", v !== "year");
      document.getElementById("hist-year").classList.toggle("active", v === "year");
      load();
    };
    document.getElementById("hist-month").onclick = () => setView("month");
    document.getElementById("hist-year").onclick = () => setView("year");
    const step = (dir) => {
      if (hs.view === "day") { hs.view = "month"; }
      else if (hs.view === "year") hs.year += dir;
      else { hs.month += dir; if (hs.month < 1) { hs.month = 12; hs.year--; } if (hs.month > 12) { hs.month = 1; hs.year++; } }
      load();
    };
    document.getElementById("hist-prev").onclick = () => step(-1);
    document.getElementById("hist-next").onclick = () => step(1);
    for (const b of document.querySelectorAll("#hist-what button")) {
      b.onclick = () => {
        hs.what = b.dataset.what;
        for (const o of document.querySelectorAll("#hist-what button")) o.classList.toggle("active", o === b);
        render();
      };
    }
    const sel = document.getElementById("meter");
    if (sel) sel.addEventListener("change", () => { hs.meter = sel.value; load(); });
    window.addEventListener("resize", render);
    load();
    setInterval(() => { if (hs.view !== "year") load(); }, 60000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
