// meterpipe live page: REST for the first picture, the WebSocket /ws for every reading and
// relay event after that, /api/status every 5 s for worker health. Plain DOM and SVG.
// With accounts (docs/ARCHITECTURE.md, "Accounts") /api/session says who is logged in; an
// operator gets relay controls (POST /api/relays/{name} with the session's X-CSRF-Token).
"use strict";
(function () {
  const HOUR_MS = 3600e3, DAY_MS = 86400e3;
  const st = {
    meter: null, last: {}, relays: new Map(), hour: [], day: [], range: "hour",
    dirty: true, ws: null, lastMsg: 0, session: null, ended: false,
    results: new Map(),  // relay -> the last switch's result line, kept across re-renders
  };
  const $ = (id) => document.getElementById(id);

  async function get(url) {
    const r = await fetch(url, { cache: "no-store" });
    if (r.status === 401) { location.href = "/login"; throw new Error("login required"); }
    if (!r.ok) throw new Error(url + ": HTTP " + r.status);
    return r.json();
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) e.append(k);
    return e;
  }
  function fmtW(w) {
    if (w === null || w === undefined || !isFinite(w)) return "–";
    const a = Math.abs(w);
    if (a >= 10000) return (w / 1000).toFixed(2) + " kW";
    return Math.round(w).toLocaleString() + " W";
  }
  function fmtN(v, digits, unit) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    return Number(v).toFixed(digits) + (unit ? " " + unit : "");
  }
  function fmtAge(s) {
    if (s === null || s === undefined) return "–";
    if (s < 90) return s.toFixed(1) + " s";
    if (s < 5400) return (s / 60).toFixed(0) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }
  function fmtTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ---- current values
  function renderNow() {
    const r = st.last[st.meter];
    $("meter-name").textContent = st.meter ? "· " + st.meter : "";
    const net = $("net"), dir = $("direction");
    if (!r) return;
    const w = r.net_w;
    net.textContent = fmtW(w);
    net.dataset.w = w === null ? "" : String(w);
    net.dataset.seq = String(r.seq);
    net.dataset.meter = r.meter;
    const cls = w > 0 ? "imp" : w < 0 ? "exp" : "";
    net.className = "net " + cls;
    dir.className = "direction " + cls;
    dir.textContent = w > 0 ? "importing from the grid" : w < 0 ? "exporting to the grid" : "balanced";
    $("updated").textContent = "reading " + r.seq + " at " +
      new Date(r.receive_time_ns / 1e6).toLocaleTimeString();
    const v = r.values || {};
    const body = $("phases").tBodies[0];
    body.textContent = "";
    for (const p of ["l1", "l2", "l3"]) {
      let pw = v["power_" + p + "_w"];
      const ex = v["power_export_" + p + "_w"];
      if (pw !== undefined && ex !== undefined) pw = pw - ex;
      else if (pw === undefined && ex !== undefined) pw = -ex;
      const volt = v["voltage_" + p + "_v"], cur = v["current_" + p + "_a"];
      if (pw === undefined && volt === undefined && cur === undefined) continue;
      const row = el("tr", {}, el("td", {}, p.toUpperCase()),
        el("td", { class: pw > 0 ? "imp" : "" }, fmtW(pw)),
        el("td", {}, fmtN(volt, 1, "V")), el("td", {}, fmtN(cur, 2, "A")));
      body.append(row);
    }
    if (!body.rows.length) body.append(el("tr", {}, el("td", { colspan: "4", class: "small" }, "no per-phase values")));
    const today = r.today || {}, dl = $("today");
    dl.textContent = "";
    const add = (k, val) => { dl.append(el("dt", {}, k), el("dd", {}, val)); };
    if (today.import_kwh) add("Import", fmtN(today.import_kwh.value, 3, "kWh"));
    if (today.export_kwh) add("Export", fmtN(today.export_kwh.value, 3, "kWh"));
    if (today.import_kwh && today.export_kwh)
      add("Net", fmtN(today.import_kwh.value - today.export_kwh.value, 3, "kWh"));
    if (today.gas_m3) add("Gas", fmtN(today.gas_m3.value, 3, "m³"));
    if (v.gas_m3 !== undefined) add("Gas meter", fmtN(v.gas_m3, 3, "m³"));
    if (v.water_m3 !== undefined) add("Water meter", fmtN(v.water_m3, 3, "m³"));
    if (v.tariff !== undefined) add("Tariff", String(v.tariff));
    const any = today.import_kwh || today.export_kwh;
    $("today-note").textContent = !any ? "" : (any.from_midnight ? "since local midnight" :
      "since " + new Date(any.since_ns / 1e6).toLocaleTimeString() + " (serve started today)");
  }

  // ---- relays
  function renderRelays() {
    const ul = $("relays");
    ul.textContent = "";
    if (!st.relays.size) { ul.append(el("li", { class: "small" }, "none configured")); return; }
    for (const r of st.relays.values()) {
      const pill = el("span", { class: "pill " + (r.on === true ? "on" : r.on === false ? "off" : "") },
        r.on === true ? "ON" : r.on === false ? "OFF" : "?");
      const li = el("li", { "data-relay": r.name, "data-on": String(r.on) }, pill, " ", el("b", {}, r.name));
      const e = r.last_event;
      if (e) {
        if (!e.ok) pill.className = "pill bad";
        li.append(el("div", { class: "small" },
          (e.mode ? e.mode + ": " : "") + (e.reason || "") + (e.ok ? "" : " — failed: " + e.error) +
          (e.time_ns ? " (" + new Date(e.time_ns / 1e6).toLocaleTimeString() + ")" : "")));
      } else {
        li.append(el("div", { class: "small" }, "no switch since serve started"));
      }
      if (r.override && r.override !== "none" && r.override !== "auto") {
        li.dataset.override = r.override;
        li.dataset.until = r.until_ms ? String(r.until_ms) : "";
        li.append(el("div", { class: "small override" }, "override " + r.override +
          (r.until_ms ? " until " + new Date(r.until_ms).toLocaleTimeString() : " until changed")));
      }
      if (st.session && st.session.can_control) li.append(relayControls(r.name));
      ul.append(li);
    }
  }

  // ---- relay control (operators)
  function relayControls(name) {
    const box = el("div", { class: "controls", "data-controls": name });
    const dur = el("select", { "aria-label": "for how long", "data-for": name });
    for (const [v, t] of [["0", "until changed"], ["600", "10 min"], ["1800", "30 min"],
      ["3600", "1 h"], ["7200", "2 h"], ["14400", "4 h"], ["43200", "12 h"]]) {
      dur.append(el("option", { value: v }, t));
    }
    const msg = el("span", { class: "small", "data-result": name });
    const last = st.results.get(name);
    if (last) { msg.textContent = last.text; msg.dataset.ok = String(last.ok); }
    for (const mode of ["on", "off", "auto"]) {
      const b = el("button", { class: "act", type: "button", "data-mode": mode }, mode);
      b.addEventListener("click", () => switchRelay(name, mode, mode === "auto" ? 0 : Number(dur.value), msg));
      box.append(b);
    }
    box.append(dur, msg);
    return box;
  }
  // The result line of a relay's last switch: kept in st.results, since the relay list is
  // drawn again at each update (the live socket, the status poll).
  function showResult(name, text, ok) {
    st.results.set(name, { text, ok });
    const m = document.querySelector('[data-result="' + CSS.escape(name) + '"]');
    if (m) { m.textContent = text; m.dataset.ok = String(ok); }
  }
  async function switchRelay(name, mode, forS, msg) {
    st.results.delete(name);
    msg.textContent = "…";
    try {
      const r = await fetch("/api/relays/" + encodeURIComponent(name), {
        method: "POST", cache: "no-store",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": st.session.csrf },
        body: JSON.stringify(forS ? { mode, for_s: forS } : { mode }),
      });
      const j = await r.json().catch(() => ({}));
      if (r.status === 401) { location.href = "/login"; return; }
      if (!r.ok) { showResult(name, "refused: " + (j.error || ("HTTP " + r.status)), false); return; }
      applyControl(name, j.status);
      st.results.set(name, { text: "done: " + mode + (forS ? " for " + Math.round(forS / 60) + " min" : ""), ok: true });
      renderRelays();
    } catch (e) { showResult(name, "failed: " + e.message, false); }
  }
  function applyControl(name, status) {
    if (!status) return;
    const r = st.relays.get(name) || { name };
    if (status.known !== false) r.on = status.on;
    r.override = status.override;
    r.until_ms = status.override_left_s ? Date.now() + status.override_left_s * 1000 : 0;
    st.relays.set(name, r);
  }
  async function loadSession() {
    try {
      st.session = await get("/api/session");
    } catch (e) { console.warn(e); return; }
    const who = $("who");
    if (who && st.session.user) {
      who.textContent = st.session.user + " (" + st.session.role + ")";
      $("logout-csrf").value = st.session.csrf || "";
      $("logout").hidden = false;
    }
  }

  // ---- workers
  function renderStatus(s) {
    const body = $("workers").tBodies[0];
    body.textContent = "";
    for (const [name, w] of Object.entries(s.workers || {})) {
      body.append(el("tr", { "data-worker": name },
        el("td", {}, name),
        el("td", {}, el("span", { class: "dot" + (w.up ? " up" : "") }), w.up ? " up" : " down"),
        el("td", {}, fmtAge(w.uptime_s)), el("td", {}, fmtAge(w.last_health_age_s))));
    }
    const sv = s.serve || {};
    $("serve-note").textContent = "serve up " + fmtAge(sv.uptime_s) + " · " +
      (sv.websocket_clients || 0) + " live client(s) · bus lost " + (sv.bus_lost || 0);
    const sel = $("meter"), names = Object.keys(s.meters || {});
    if (names.length > 1 && sel.options.length !== names.length) {
      sel.textContent = "";
      for (const n of names) sel.append(el("option", { value: n }, n));
      sel.value = st.meter || names[0];
      sel.hidden = false;
    }
    if (!st.meter && names.length) { st.meter = names[0]; loadHistory(); }
  }

  // ---- history and chart
  function addPoint(tMs, w) {
    const sec = Math.floor(tMs / 1000) * 1000;
    const h = st.hour, lh = h[h.length - 1];
    if (lh && lh.t === sec) { lh.sum += w; lh.n += 1; lh.v = lh.sum / lh.n; }
    else if (!lh || sec > lh.t) h.push({ t: sec, v: w, sum: w, n: 1 });
    while (h.length && h[0].t <= sec - HOUR_MS) h.shift();
    const min = Math.floor(tMs / 60000) * 60000;
    const d = st.day, ld = d[d.length - 1];
    if (ld && ld.t === min) {
      ld.sum += w; ld.n += 1; ld.v = ld.sum / ld.n; ld.lo = Math.min(ld.lo, w); ld.hi = Math.max(ld.hi, w);
    } else if (!ld || min > ld.t) d.push({ t: min, v: w, sum: w, n: 1, lo: w, hi: w });
    while (d.length && d[0].t <= min - DAY_MS) d.shift();
    st.dirty = true;
  }

  async function loadHistory() {
    if (!st.meter) return;
    const m = encodeURIComponent(st.meter);
    try {
      const [h, d] = await Promise.all([get("/api/history/" + m + "?minutes=60&resolution=1"),
        get("/api/history/" + m + "?minutes=1440&resolution=60")]);
      st.hour = h.points.map((p) => ({ t: p[0], v: p[1], sum: p[1], n: 1 }));
      st.day = d.points.map((p) => ({ t: p[0], v: p[1], sum: p[1] * 1, n: 1, lo: p[2], hi: p[3] }));
      st.dirty = true;
      renderChart();
    } catch (e) { console.warn(e); }
  }

  function renderChart() {
    const svg = $("chart");
    const W = Math.max(svg.clientWidth || 600, 200), H = Math.max(svg.clientHeight || 240, 120);
    const pts = st.range === "hour" ? st.hour : st.day;
    const step = st.range === "hour" ? 1000 : 60000;
    const now = Date.now(), span = st.range === "hour" ? HOUR_MS : DAY_MS;
    const t0 = now - span;
    const vis = pts.filter((p) => p.t > t0 - step);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.dataset.points = String(vis.length);
    svg.textContent = "";
    const ns = "http://www.w3.org/2000/svg";
    const mk = (tag, attrs) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      svg.append(e);
      return e;
    };
    const L = 46, R = 6, T = 8, B = 20;
    let lo = 0, hi = 0;
    for (const p of vis) {
      lo = Math.min(lo, p.lo !== undefined ? p.lo : p.v); hi = Math.max(hi, p.hi !== undefined ? p.hi : p.v);
    }
    if (hi - lo < 100) { hi += 50; lo -= 50; }
    const pad = (hi - lo) * 0.05; hi += pad; lo -= pad;
    const x = (t) => L + (t - t0) / span * (W - L - R);
    const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
    const y0 = y(0);
    // clip areas: above the zero line is import, below export
    const defs = mk("defs", {});
    const clip = (id, yy, hh) => {
      const c = document.createElementNS(ns, "clipPath"); c.setAttribute("id", id);
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", 0); r.setAttribute("y", yy); r.setAttribute("width", W); r.setAttribute("height", Math.max(hh, 0));
      c.append(r); defs.append(c);
    };
    clip("clip-imp", 0, y0); clip("clip-exp", y0, H - y0);
    mk("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
    mk("line", { class: "zero", x1: L, y1: y0, x2: W - R, y2: y0 });
    for (const v of [hi - pad, lo + pad]) {
      if (Math.abs(y(v) - y0) < 14) continue;  // would overlap the zero label
      const t = mk("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }); t.textContent = fmtW(v);
    }
    const z = mk("text", { x: L - 4, y: y0 + 4, "text-anchor": "end" }); z.textContent = "0";
    const ticks = W < 520 ? 2 : st.range === "hour" ? 4 : 6;  // phones: fewer labels
    for (let i = 0; i <= ticks; i++) {
      const t = t0 + span * i / ticks;
      const tx = mk("text", { x: x(t), y: H - 5, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" });
      tx.textContent = fmtTime(t);
    }
    if (!vis.length) { $("chart-note").textContent = "· no data yet"; return; }
    $("chart-note").textContent = "· " + vis.length + (st.range === "hour" ? " seconds" : " minutes");
    // split into runs where points are contiguous (a gap > 5 steps breaks the line)
    const runs = [];
    let run = [];
    for (const p of vis) {
      if (run.length && p.t - run[run.length - 1].t > 5 * step) { runs.push(run); run = []; }
      run.push(p);
    }
    if (run.length) runs.push(run);
    let area = "", line = "", band = "";
    for (const r of runs) {
      const xs = r.map((p) => x(p.t + step / 2).toFixed(1));
      line += "M" + r.map((p, i) => xs[i] + "," + y(p.v).toFixed(1)).join("L");
      area += "M" + xs[0] + "," + y0.toFixed(1) + "L" + r.map((p, i) => xs[i] + "," + y(p.v).toFixed(1)).join("L") +
        "L" + xs[xs.length - 1] + "," + y0.toFixed(1) + "Z";
      if (st.range === "day") {
        band += "M" + r.map((p, i) => xs[i] + "," + y(p.hi).toFixed(1)).join("L") + "L" +
          r.slice().reverse().map((p, i) => xs[xs.length - 1 - i] + "," + y(p.lo).toFixed(1)).join("L") + "Z";
      }
    }
    if (band) mk("path", { class: "band", d: band });
    mk("path", { d: area, fill: "var(--imp)", "fill-opacity": "0.35", "clip-path": "url(#clip-imp)" });
    mk("path", { d: area, fill: "var(--exp)", "fill-opacity": "0.35", "clip-path": "url(#clip-exp)" });
    mk("path", { class: "line", d: line, id: "chart-line" });
    st.dirty = false;
  }

  // ---- live updates
  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    let ws;
    try { ws = new WebSocket(url); } catch (e) { setTimeout(connect, 3000); return; }
    st.ws = ws;
    ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn on"; };
    ws.onclose = (ev) => {
      if (ev.code === 4001) {  // the login ended (logout, expiry, new password): no reconnect
        st.ended = true;  // and no more polling: the page stays, saying so
        const c = $("conn");
        c.textContent = "";
        c.append("logged out: ", el("a", { href: "/login" }, "log in again"));
        c.className = "conn off ended";
        return;
      }
      $("conn").textContent = "reconnecting…"; $("conn").className = "conn off";
      setTimeout(() => { connect(); refresh(); }, 2000);
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      st.lastMsg = Date.now();
      if (m.type === "reading") {
        const r = m.reading;
        if (!st.meter) st.meter = r.meter;
        const old = st.last[r.meter];
        if (old && old.units && !r.units) r.units = old.units;
        st.last[r.meter] = r;
        if (r.meter === st.meter) {
          if (r.net_w !== null && r.net_w !== undefined) addPoint(r.receive_time_ns / 1e6, r.net_w);
          renderNow();
        }
      } else if (m.type === "relay") {
        const r = st.relays.get(m.relay) || { name: m.relay };
        r.on = m.on; r.last_event = m.event;
        st.relays.set(m.relay, r);
        renderRelays();
      } else if (m.type === "relay_control") {
        applyControl(m.relay, m.status);
        renderRelays();
      }
    };
  }

  async function refresh() {
    try {
      const last = await get("/api/last");
      Object.assign(st.last, last);
      if (!st.meter) st.meter = Object.keys(last)[0] || null;
      renderNow();
    } catch (e) { console.warn(e); }
    await loadRelays();
    await loadStatus();
    await loadHistory();
  }
  async function loadRelays() {
    try {
      const rel = await get("/api/relays");
      const old = st.relays;
      st.relays = new Map(rel.relays.map((r) => {
        const o = old.get(r.name);
        if (o && o.override) { r.override = o.override; r.until_ms = o.until_ms; }
        return [r.name, r];
      }));
      renderRelays();
    } catch (e) { console.warn(e); }
  }
  async function loadStatus() {
    if (st.ended) return;
    try { renderStatus(await get("/api/status")); } catch (e) { console.warn(e); }
    // a relay serve did not know yet when the page opened (actuate's first heartbeat still on
    // its way, right after a start) is asked for again: no event may come for hours
    if ([...st.relays.values()].some((r) => r.on !== true && r.on !== false)) await loadRelays();
  }

  for (const b of document.querySelectorAll(".tab")) {
    b.addEventListener("click", () => {
      st.range = b.dataset.range;
      for (const o of document.querySelectorAll(".tab")) o.classList.toggle("active", o === b);
      renderChart();
    });
  }
  $("meter").addEventListener("change", (e) => {
    st.meter = e.target.value; st.hour = []; st.day = []; renderNow(); loadHistory();
  });
  window.addEventListener("resize", () => renderChart());
  setInterval(() => { if (st.dirty) renderChart(); }, 1000);
  setInterval(loadStatus, 5000);
  loadSession().then(refresh).then(connect);
})();
