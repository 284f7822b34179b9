// sensord's operator page: the streams list, one stream's charts and its alerts.
// Plain script, no build step; every text from the daemon goes in with textContent.
"use strict";

const state = { info: null, route: null, stream: null, charts: [], spans: [], token: "" };
const CHANNEL_COLOURS = {
  point: "rgba(198,40,40,.18)", sustained: "rgba(230,81,0,.18)", contextual: "rgba(106,27,154,.16)",
  shift: "rgba(21,101,192,.16)", extremes: "rgba(0,121,107,.16)", error: "rgba(198,40,40,.18)",
};

const $ = (selector) => document.querySelector(selector);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function when(ts) {
  if (ts === null || ts === undefined) return "";
  const d = new Date(ts * 1000);
  if (new Date().toDateString() === d.toDateString()) return d.toLocaleTimeString();
  return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function ago(received) {
  if (received === null || received === undefined) return "";
  const s = Math.max(0, Date.now() / 1000 - received);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function num(x, digits = 3) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// health and the streams list

async function refreshHealth() {
  const pill = $("#health");
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    const body = await response.json();
    pill.textContent = body.status === "ok" ? "healthy" : "unhealthy: " + body.reasons.join("; ");
    pill.className = "pill " + (body.status === "ok" ? "ok" : "unhealthy");
  } catch (error) {
    pill.textContent = "daemon unreachable";
    pill.className = "pill unhealthy";
  }
}

async function refreshList() {
  const query = new URLSearchParams({ q: $("#filter").value, status: $("#status").value });
  try {
    const body = await getJSON("/api/streams?" + query);
    renderList(body);
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("#updated").textContent = "list: " + error.message;
  }
}

function renderList(body) {
  const tbody = $("#streams tbody");
  const rows = [];
  for (const s of body.streams) {
    const tr = el("tr");
    tr.dataset.route = s.route;
    tr.dataset.stream = s.stream;
    if (s.route === state.route && s.stream === state.stream) tr.className = "chosen";
    const name = el("td", state.info && state.info.routes.length > 1 ? `${s.route} / ${s.stream}` : s.stream);
    name.title = s.stream;
    const status = el("td");
    status.append(el("span", s.nodata ? "no data" : s.status.replace("_", " "), "pill " + s.status));
    tr.append(name, status, el("td", num(s.score)),
      el("td", s.raised_ts ? `${when(s.raised_ts)} (${s.channel || "?"})` : ""),
      el("td", ago(s.last_received)));
    tr.addEventListener("click", () => choose(s.route, s.stream));
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  $("#count").textContent = `${body.streams.length} of ${body.total} streams`;
}

// one stream

function choose(route, stream) {
  state.route = route;
  state.stream = stream;
  location.hash = encodeURIComponent(route) + "/" + encodeURIComponent(stream);
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  $("#charts").replaceChildren();
  $("#hint").hidden = true;
  $("#chosen").hidden = false;
  $("#title").textContent = stream;
  for (const tr of document.querySelectorAll("#streams tbody tr")) {
    tr.className = tr.dataset.route === route && tr.dataset.stream === stream ? "chosen" : "";
  }
  refreshStream();
}

function routeInfo(name) {
  return state.info.routes.find((r) => r.name === name);
}

function spansOf(alerts, lastTs) {
  // alert events newest first -> spans [start, end, channel], oldest first
  const spans = [];
  let open = null;
  for (const a of [...alerts].reverse()) {
    if (a.event === "raised") {
      open = { start: a.ts, end: null, channel: a.channel, id: a.alert_id };
      spans.push(open);
    } else if (a.event === "cleared" && open && open.id === a.alert_id) {
      open.end = a.ts;
      open = null;
    } else if (a.event === "cleared") {
      spans.push({ start: a.raised_ts, end: a.ts, channel: a.channel, id: a.alert_id });
    }
  }
  for (const s of spans) if (s.end === null) s.end = lastTs;
  return spans;
}

function shadeSpans(u) {
  const ctx = u.ctx;
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  ctx.save();
  ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
  for (const s of state.spans) {
    if (s.end < lo || s.start > hi) continue;
    const x0 = u.valToPos(Math.max(s.start, lo), "x", true);
    const x1 = Math.max(u.valToPos(Math.min(s.end, hi), "x", true), x0 + 2);
    ctx.fillStyle = CHANNEL_COLOURS[s.channel] || CHANNEL_COLOURS.error;
    ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
    ctx.fillStyle = "#7f0000";
    ctx.fillText(s.channel, x0 + 3, u.bbox.top + 12 * devicePixelRatio);
  }
  ctx.restore();
}

function makeChart(title, series, width) {
  const box = el("div", null, "chart");
  box.append(el("h4", title));
  $("#charts").append(box);
  const options = {
    width, height: 150,
    scales: { x: { time: true } },
    series: [{}, ...series],
    legend: { show: true },
    hooks: { drawClear: [shadeSpans] },
  };
  const chart = new uPlot(options, [[], ...series.map(() => [])], box);
  state.charts.push(chart);
  return chart;
}

function buildCharts(route) {
  const width = Math.max(320, $("#charts").clientWidth - 10);
  for (const feature of route.features) {
    const unit = route.units[feature] ? ` (${route.units[feature]})` : "";
    makeChart(feature + unit, [
      { label: "reading", stroke: "#1565c0", width: 1.5 },
      { label: "expected", stroke: "#9e9e9e", width: 1.5, dash: [4, 3] },
    ], width);
  }
  makeChart("anomaly score", [
    { label: "score", stroke: "#6a1b9a", width: 1.5 },
    { label: "threshold", stroke: "#c62828", width: 1, dash: [6, 4], points: { show: false } },
  ], width);
}

async function refreshStream() {
  if (!state.stream) return;
  const { route: name, stream } = state;
  let body;
  try {
    body = await getJSON("/api/stream?" + new URLSearchParams({ route: name, stream }));
  } catch (error) {
    $("#verdict-state").textContent = error.message;
    return;
  }
  if (name !== state.route || stream !== state.stream) return; // chosen another meanwhile
  const route = routeInfo(name);
  if (!state.charts.length) buildCharts(route);
  const c = body.chart;
  const last = c.ts.length ? c.ts[c.ts.length - 1] : null;
  state.spans = spansOf(body.alerts, last);
  route.features.forEach((_, i) => state.charts[i].setData([c.ts, c.values[i], c.expected[i]]));
  state.charts[route.features.length].setData([c.ts, c.score, c.ts.map(() => route.threshold)]);
  $("#charts").dataset.points = String(c.ts.length);
  $("#charts").dataset.last = String(last);
  const active = body.alerts.length && body.alerts[0].event !== "cleared";
  const pill = $("#title-status");
  pill.textContent = active ? "alert" : "";
  pill.className = active ? "pill alert" : "";
  renderAlerts(body.alerts);
}

function renderAlerts(alerts) {
  const rows = alerts.map((a) => {
    const tr = el("tr");
    const feedback = el("td");
    if (a.feedback) feedback.append(el("span", `${a.feedback.verdict}${a.feedback.by ? " by " + a.feedback.by : ""}`));
    if (state.info.verdicts && a.event === "raised") {
      for (const verdict of ["confirmed", "false_positive", "new_normal"]) {
        const button = el("button", verdict.replace("_", " "), "verdict");
        button.addEventListener("click", () => sendVerdict(a, verdict));
        feedback.append(button);
      }
    }
    tr.append(el("td", when(a.ts)), el("td", a.event), el("td", a.channel),
      el("td", num(a.score)), el("td", a.message, "message"), feedback);
    return tr;
  });
  $("#alerts tbody").replaceChildren(...rows);
}

async function sendVerdict(alert, verdict) {
  if (!state.token) state.token = sessionStorage.getItem("sensord-token") || prompt("Token for verdicts") || "";
  if (!state.token) return;
  sessionStorage.setItem("sensord-token", state.token);
  const response = await fetch("/api/feedback", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + state.token },
    body: JSON.stringify({ stream: alert.stream, alert_id: alert.alert_id, verdict, by: "web page" }),
  });
  const body = await response.json();
  if (response.status === 401) { state.token = ""; sessionStorage.removeItem("sensord-token"); }
  $("#verdict-state").textContent = response.ok
    ? `${verdict} taken for alert ${alert.alert_id}`
    : `refused: ${body.reason || body.error}`;
  refreshStream();
}

// start

async function start() {
  state.info = await getJSON("/api/info");
  $("#version").textContent = "v" + state.info.version;
  let typing = null;
  $("#filter").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refreshList, 250); });
  $("#status").addEventListener("change", refreshList);
  const [route, stream] = location.hash.slice(1).split("/").map(decodeURIComponent);
  if (stream && routeInfo(route)) choose(route, stream);
  refreshHealth();
  refreshList();
  setInterval(() => { if (!document.hidden) refreshList(); }, 2000);
  setInterval(() => { if (!document.hidden) refreshStream(); }, 1000);
  setInterval(refreshHealth, 5000);
}

start();
