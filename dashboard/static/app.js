// The operations page: a snapshot on connect, then one "update" message per server flush.
// Plain JS, no libraries and no network beyond this server. The map is two canvases: the
// base (city outline, zones) drawn once per resize, the drone layer redrawn per update;
// 200 dots cost well under a millisecond, so the handler redraws synchronously and its
// time (performance.now around it) is the render time per update the bench reports.
"use strict";

const STALE_MS = 10000;          // a drone without an update for this long is drawn grey
const SILENT_MS = 10000;         // a feed without records for this long says "no data since"
const FEED_LABELS = {broker: "代理 broker", alerts: "告警 alerts", compliance: "合规 compliance", reviews: "审核 reviews"};

const S = {
  drones: new Map(),             // serial -> {lat, lon, h, hdg, spd, alert, seen}
  feeds: [], info: {}, skew: 0,  // skew: server clock - browser clock (ms)
  connected: false, lostAt: null, lastDroneMsg: null, selected: null,
};
const cmDash = window.cmDash = {
  S, perf: [], updates: 0, redAt: {}, colorOf, project: null,
  resetPerf() { this.perf = []; this.updates = 0; },
};

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const hms = (ms) => ms ? new Date(ms).toLocaleTimeString("en-GB", {hour12: false}) : "—";
const serverNow = () => Date.now() + S.skew;

// ---- map
let geo = null, proj = null;
const base = $("base"), layer = $("layer");

function fit() {
  const r = $("map").getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  for (const c of [base, layer]) { c.width = Math.max(1, r.width * dpr); c.height = Math.max(1, r.height * dpr); }
  if (!geo) return;
  let x0 = 180, x1 = -180, y0 = 90, y1 = -90;
  for (const f of geo.features) for (const ring of rings(f.geometry)) for (const [x, y] of ring) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const kx = Math.cos(((y0 + y1) / 2) * Math.PI / 180), pad = 16 * dpr;
  const s = Math.min((base.width - 2 * pad) / ((x1 - x0) * kx || 1), (base.height - 2 * pad) / ((y1 - y0) || 1));
  const ox = (base.width - (x1 - x0) * kx * s) / 2, oy = (base.height - (y1 - y0) * s) / 2;
  proj = cmDash.project = (lat, lon) => [ox + (lon - x0) * kx * s, base.height - oy - (lat - y0) * s];
  cmDash.dpr = dpr;
  drawBase();
  draw();
}

function rings(g) {
  if (g.type === "Polygon") return g.coordinates;
  if (g.type === "MultiPolygon") return g.coordinates.flat();
  return [];
}

const ZONE_STYLE = {
  PROHIBITED: ["rgba(220,0,0,.16)", "#d00000"], REQ_AUTHORISATION: ["rgba(240,140,0,.16)", "#e08000"],
  CONDITIONAL: ["rgba(230,200,0,.2)", "#c9a800"],
};

function drawBase() {
  const g = base.getContext("2d"), dpr = cmDash.dpr;
  g.clearRect(0, 0, base.width, base.height);
  for (const f of geo.features) {
    const p = f.properties, zone = p.layer === "zone";
    const [fill, stroke] = zone ? (ZONE_STYLE[p.restriction] || ZONE_STYLE.CONDITIONAL)
      : (p.geofence && /urban|city/.test(p.geofence) ? ["#ffffff", "#8a96a3"] : ["rgba(40,110,200,.05)", "#4a7fc1"]);
    g.beginPath();
    for (const ring of rings(f.geometry)) ring.forEach(([x, y], i) => {
      const [px, py] = proj(y, x); i ? g.lineTo(px, py) : g.moveTo(px, py);
    });
    g.closePath(); g.fillStyle = fill; g.fill();
    g.lineWidth = (zone ? 1.5 : 1) * dpr; g.strokeStyle = stroke;
    g.setLineDash(zone || /urban|city/.test(p.geofence) ? [] : [5 * dpr, 4 * dpr]); g.stroke(); g.setLineDash([]);
    if (zone || p.name) {
      const ring = rings(f.geometry)[0] || [];
      const [px, py] = proj(Math.max(...ring.map((c) => c[1])), Math.min(...ring.map((c) => c[0])));
      g.fillStyle = zone ? stroke : "#5b6670"; g.font = `${11 * dpr}px system-ui, sans-serif`;
      g.fillText(zone ? `${p.name_zh || ""} ${p.name || p.identifier || ""}` : (p.name || p.geofence), px + 3 * dpr, py + 12 * dpr);
    }
  }
}

function colorOf(serial) {
  const d = S.drones.get(serial);
  if (!d) return null;
  if (d.alert) return "#e00000";
  if (serverNow() - d.seen > STALE_MS) return "#9aa3ab";
  return "#2e7d32";
}

function draw() {
  if (!proj) return;
  const g = layer.getContext("2d"), dpr = cmDash.dpr, r = 4 * dpr, now = serverNow();
  g.clearRect(0, 0, layer.width, layer.height);
  const red = [];
  for (const [serial, d] of S.drones) {
    if (d.alert) { red.push(d); continue; }   // red ones last, on top
    dot(g, d, now - d.seen > STALE_MS ? "#9aa3ab" : "#2e7d32", r);
  }
  for (const d of red) dot(g, d, "#e00000", r * 1.3);
  const sel = S.selected && S.drones.get(S.selected);
  if (sel) { const [x, y] = proj(sel.lat, sel.lon); g.beginPath(); g.arc(x, y, r * 2.2, 0, 7); g.strokeStyle = "#1d232b"; g.lineWidth = 1.5 * dpr; g.stroke(); }
}

function dot(g, d, color, r) {
  const [x, y] = proj(d.lat, d.lon);
  g.fillStyle = color; g.beginPath(); g.arc(x, y, r, 0, 7); g.fill();
  if (d.hdg != null) {
    const a = d.hdg * Math.PI / 180;
    g.strokeStyle = color; g.lineWidth = r / 2; g.beginPath(); g.moveTo(x, y);
    g.lineTo(x + Math.sin(a) * r * 2.4, y - Math.cos(a) * r * 2.4); g.stroke();
  }
}

layer.addEventListener("click", (ev) => {
  if (!proj) return;
  const rect = layer.getBoundingClientRect(), dpr = cmDash.dpr;
  const cx = (ev.clientX - rect.left) * dpr, cy = (ev.clientY - rect.top) * dpr;
  let best = null, bestD = (12 * dpr) ** 2;
  for (const [serial, d] of S.drones) {
    const [x, y] = proj(d.lat, d.lon), dd = (x - cx) ** 2 + (y - cy) ** 2;
    if (dd < bestD) { best = serial; bestD = dd; }
  }
  S.selected = best; draw(); showDrone(best);
});

async function showDrone(serial) {
  const el = $("drone-detail");
  if (!serial) { el.innerHTML = "—"; return; }
  const res = await fetch(`/api/drone/${encodeURIComponent(serial)}`);
  const d = await res.json();
  if (!res.ok) { el.textContent = d.error || "unknown"; return; }
  const rows = Object.entries(d.record).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === "number" && !Number.isInteger(v) ? v.toFixed(6).replace(/0+$/, "") : v)}</td></tr>`).join("");
  el.innerHTML = `<div>${d.alert ? '<span class="badge">告警 alert open</span> ' : ""}合约 contract <b>${esc(d.contract)}</b> · 收到 received ${hms(d.received_ms)}</div><table>${rows}</table>`;
  el.dataset.serial = serial;
}

// ---- panels
function renderAlerts(list) {
  const open = list.filter((a) => a.open).length;
  $("alert-count").textContent = `${open} 未关闭 open`;
  $("alert-rows").innerHTML = list.map((a) => `<tr class="${a.open ? "open" : "closed"}" data-subject="${esc(a.subject)}" data-rule="${esc(a.rule)}" title="${esc(a.message)}">
    <td><span class="sev sev-${esc(a.severity)}">${esc(a.severity)}</span>${a.escalated ? '<span class="badge">升级 escalated</span>' : ""}</td>
    <td>${esc(a.rule)}</td><td>${esc(a.subject)}</td><td>${hms(a.start_ms)}</td><td class="num">${a.count}</td>
    <td><a href="/evidence?id=${encodeURIComponent(a.alert_id)}&t=${a.alert_time_ms}" target="_blank">账本 ledger</a></td></tr>`).join("");
}

function spark(series) {
  const w = 120, h = 18, max = Math.max(1, ...series), n = series.length;
  const pts = series.map((v, i) => `${(i * w / Math.max(1, n - 1)).toFixed(1)},${(h - v / max * (h - 2) - 1).toFixed(1)}`).join(" ");
  return `<svg width="${w}" height="${h}"><polyline fill="none" stroke="#4a7fc1" stroke-width="1.5" points="${pts}"/></svg>`;
}

function renderHotline(hl) {
  $("hotline-rows").innerHTML = hl.rows.map((r) => {
    const districts = Object.entries(r.districts).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([d, n]) => `${esc(d)} ${n}`).join(" · ");
    return `<tr class="${r.surge ? "surge" : ""}"><td>${esc(r.name)} <span class="muted">${esc(r.category)}</span>${r.surge ? '<span class="badge">激增 surge</span>' : ""}</td>
      <td>${spark(r.series)}</td><td class="num">${r.total}</td><td>${districts}</td></tr>`;
  }).join("") || `<tr><td colspan="4" class="muted">暂无工单 no tickets yet</td></tr>`;
}

function renderMesh(m) {
  $("contract-rows").innerHTML = m.contracts.map((c) => `<tr><td>${esc(c.contract)}</td><td>${esc(c.product)}</td>
    <td class="num">${c.delivered}</td><td class="num">${c.dropped}</td><td class="num">${c.throttled}</td><td class="num">${c.rejected}</td></tr>`).join("");
  $("runner-rows").innerHTML = m.runners.map((r) => `<tr data-product="${esc(r.product)}"><td>${esc(r.product)}</td><td class="num">${r.rate}</td>
    <td class="num">${r.lag}</td><td class="status-${esc(r.status.replace(" ", "-"))}">${r.status === "stalled" ? `停滞 stalled since ${hms(r.since_ms)}`
      : r.status === "no group" ? "未运行 no runner group" : "正常 ok"}</td></tr>`).join("");
  $("breaker-rows").innerHTML = m.breakers.map((b) => `<tr><td>${esc(b.subject)}</td><td>${esc(b.kind)}</td>
    <td class="state-${esc(b.state)}">${esc(b.state)}</td><td>${hms(b.since_ms)}</td></tr>`).join("")
    || `<tr><td colspan="4" class="muted">无熔断事件 no breaker transitions</td></tr>`;
}

function renderReviews(list) {
  $("review-count").textContent = list.length ? `${list.length} 待审核 waiting` : "";
  $("review-rows").innerHTML = list.map((r) => `<tr><td title="${esc(r.id)}">${esc(r.consumer)}</td><td>${esc(r.product)} / ${esc(r.offer)}</td>
    <td>${esc(r.purposes.join(", "))}</td><td>${esc(r.needs.join(" + "))}</td><td class="muted">${esc(r.why || "")}</td><td>${hms(r.since_ms)}</td></tr>`).join("")
    || `<tr><td colspan="6" class="muted">无待审核的数据请求 no requests waiting for the operator</td></tr>`;
}

function renderHealth() {
  const now = serverNow(), chips = [];
  if (!S.connected) chips.push(["down", `仪表盘连接中断 dashboard link lost since ${hms(S.lostAt)}`]);
  for (const f of S.feeds) {
    const label = FEED_LABELS[f.name] || f.name;
    if (!f.up) chips.push(["down", `${label}: 中断 down since ${hms(f.down_since_ms)}${f.last_record_ms ? `, no data since ${hms(f.last_record_ms)}` : ""}`]);
    else if (f.name !== "broker" && f.last_record_ms && now - f.last_record_ms > SILENT_MS) chips.push(["warn", `${label}: 无数据 no data since ${hms(f.last_record_ms)}`]);
    else chips.push(["", `${label} ✓`]);
  }
  $("health").innerHTML = chips.map(([k, t]) => `<span class="chip ${k}" title="${esc(t)}">${esc(t)}</span>`).join("");
  $("health").dataset.state = chips.some((c) => c[0] === "down") ? "down" : chips.some((c) => c[0] === "warn") ? "warn" : "ok";
  const gap = $("map-gap");
  const broker = S.feeds.find((f) => f.name === "broker");
  let msg = null;
  if (!S.connected) msg = `仪表盘连接中断 dashboard link lost · 无数据 no data since ${hms(S.lastDroneMsg)}`;
  else if (broker && !broker.up) msg = `代理不可达 broker unreachable · 无数据 no data since ${hms(S.lastDroneMsg)}`;
  else if (S.drones.size && S.lastDroneMsg && now - S.lastDroneMsg > SILENT_MS) msg = `无数据 no data since ${hms(S.lastDroneMsg)}`;
  gap.hidden = !msg; if (msg) gap.textContent = msg;
  $("drone-count").textContent = `${S.drones.size} 架 drones`;
  draw();  // stale drones turn grey even when no message comes
}

// ---- live feed
function applyDrones(list) {
  for (const [serial, lat, lon, h, hdg, spd, alert, seen] of list) {
    const d = S.drones.get(serial);
    if (alert && !(d && d.alert)) cmDash.redAt[serial] = Date.now();
    if (d) { d.lat = lat; d.lon = lon; d.h = h; d.hdg = hdg; d.spd = spd; d.alert = alert; d.seen = seen; }
    else S.drones.set(serial, {lat, lon, h, hdg, spd, alert, seen});
  }
  if (list.length) S.lastDroneMsg = Math.max(S.lastDroneMsg || 0, ...list.slice(0, 50).map((x) => x[7] || 0));
}

function apply(msg, full) {
  S.skew = msg.t - Date.now();
  if (full) S.drones.clear();
  if (msg.drones) applyDrones(msg.drones);
  if (msg.gone) for (const s of msg.gone) S.drones.delete(s);
  if (msg.info) { S.info = msg.info; $("who").textContent = `${msg.info.operator_name || msg.info.operator || ""} · 合约 contracts: ${(msg.info.contracts || []).join(", ")}`; }
  if (msg.alerts) renderAlerts(msg.alerts);
  if (msg.hotline) renderHotline(msg.hotline);
  if (msg.mesh) renderMesh(msg.mesh);
  if (msg.reviews) renderReviews(msg.reviews);
  if (msg.feeds) { S.feeds = msg.feeds; renderHealth(); }
  draw();
  if (S.selected && msg.drones && msg.drones.some((x) => x[0] === S.selected) && Math.random() < 0.2) showDrone(S.selected);
}

function handle(ev, full) {
  const t0 = performance.now();
  const msg = JSON.parse(ev.data);
  apply(msg, full);
  const ms = performance.now() - t0;
  cmDash.updates += msg.drones ? msg.drones.length : 0;
  cmDash.perf.push([ms, msg.drones ? msg.drones.length : 0]);
  if (cmDash.perf.length > 5000) cmDash.perf.splice(0, 1000);
}

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("snapshot", (ev) => { S.connected = true; S.lostAt = null; handle(ev, true); renderHealth(); });
  es.addEventListener("update", (ev) => handle(ev, false));
  es.onerror = () => { if (S.connected) { S.connected = false; S.lostAt = Date.now(); renderHealth(); } };
}

async function start() {
  geo = await (await fetch("/api/geo")).json();
  fit();
  window.addEventListener("resize", fit);
  connect();
  setInterval(renderHealth, 1000);
}
start();
