// The status page: polls GET /connectors/<name>/positions and draws each table's shard tree
// (parents above children, open/closed, who reads it, position and lag), task rows and
// snapshot progress. No build step, no libraries: plain DOM and SVG.
"use strict";

const REFRESH_MS = 2000;
const token = (new URLSearchParams(location.hash.slice(1))).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};

function el(tag, attrs, ...children) {
  const ns = ["svg", "g", "rect", "text", "path", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function lagText(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return ms + " ms";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms / 60000) + " min";
}

function shortId(id) {
  const m = /shardId-(\d+-)?([0-9a-f]+)$/.exec(id);
  return m ? "…" + m[2].slice(-8) : id.slice(-12);
}

// Lay out one table's shard graph: depth = longest chain of parents; siblings side by side.
function layout(shards) {
  const byId = new Map(shards.map(s => [s.id, s]));
  const depth = new Map();
  const d = s => {
    if (depth.has(s.id)) return depth.get(s.id);
    depth.set(s.id, 0);
    const ps = s.parents.filter(p => byId.has(p));
    const v = ps.length ? 1 + Math.max(...ps.map(p => d(byId.get(p)))) : 0;
    depth.set(s.id, v);
    return v;
  };
  shards.forEach(d);
  const rows = [];
  for (const s of shards) (rows[depth.get(s.id)] ||= []).push(s);
  // Order each row by the mean position of its parents, so children sit under parents.
  const x = new Map();
  rows.forEach((row, r) => {
    if (r > 0) row.sort((a, b) => mean(a) - mean(b));
    row.forEach((s, i) => x.set(s.id, i));
  });
  function mean(s) {
    const ps = s.parents.filter(p => x.has(p));
    return ps.length ? ps.reduce((a, p) => a + x.get(p), 0) / ps.length : 1e9;
  }
  return { rows, x, depth };
}

function drawTree(graph, tasksById) {
  const W = 190, H = 58, GX = 24, GY = 40;
  const { rows, x, depth } = layout(graph.shards);
  const cols = Math.max(1, ...rows.map(r => r.length));
  const svg = el("svg", { class: "tree", width: cols * (W + GX) + GX, height: rows.length * (H + GY) + GY,
                          "data-table": graph.table });
  const pos = id => [GX + x.get(id) * (W + GX), GY / 2 + depth.get(id) * (H + GY)];
  for (const s of graph.shards) {
    for (const p of s.parents) {
      if (!x.has(p)) continue;
      const [px, py] = pos(p), [cx, cy] = pos(s.id);
      svg.append(el("path", { class: "edge", "data-from": p, "data-to": s.id,
        d: `M${px + W / 2},${py + H} C${px + W / 2},${py + H + GY / 2} ${cx + W / 2},${cy - GY / 2} ${cx + W / 2},${cy}` }));
    }
  }
  for (const s of graph.shards) {
    const t = tasksById.get(graph.table + ":" + s.id);
    const failed = t && t.state === "FAILED";
    const cls = ["shard", s.closed ? "closed" : "open", s.reading ? "reading" : "", failed ? "failed" : ""].join(" ");
    const [sx, sy] = pos(s.id);
    const state = failed ? "FAILED" : s.finished ? "finished" : s.reading ? (t ? t.state.toLowerCase() : "reading") : "waiting";
    const seq = t && t.position && t.position.seq ? "seq …" + String(t.position.seq).slice(-8) : "";
    const g = el("g", { class: cls, transform: `translate(${sx},${sy})`, "data-shard": s.id,
                        "data-state": state, "data-closed": String(s.closed) },
      el("title", {}, `${s.id}\nparents: ${s.parents.join(", ") || "none"}${t ? "\nworker: " + t.worker_id : ""}`),
      el("rect", { width: W, height: H }),
      el("text", { x: 8, y: 15, class: "id" }, shortId(s.id) + (s.closed ? " (closed)" : " (open)")),
      el("text", { x: 8, y: 30 }, state + (t ? " · " + t.worker_id : "")),
      el("text", { x: 8, y: 45, class: "lag" }, (t ? "lag " + lagText(t.millis_behind_latest) : "") + (seq ? " · " + seq : "")));
    svg.append(g);
  }
  return svg;
}

function render(doc) {
  document.getElementById("name").textContent = doc.name;
  const st = document.getElementById("state");
  st.textContent = doc.state; st.className = "badge " + doc.state;
  const h = document.getElementById("health");
  h.textContent = doc.health.status; h.className = "badge " + doc.health.status;
  document.getElementById("worker").textContent = "worker " + doc.worker_id;
  document.getElementById("updated").textContent = "· updated " + new Date().toLocaleTimeString();
  document.getElementById("reasons").textContent = Object.entries(doc.health.checks)
    .filter(([, c]) => c.status !== "OK").map(([n, c]) => `${n}: ${c.reason}`).join(" | ");

  const tasksById = new Map(doc.tasks.map(t => [t.id, t]));
  const tables = document.getElementById("tables");
  tables.replaceChildren();
  for (const graph of doc.graphs) {
    tables.append(el("h2", {}, `${graph.table} — ${graph.shards.length} shards`), drawTree(graph, tasksById));
  }
  const rows = doc.tasks.map(t => el("tr", { "data-task": t.id },
    el("td", {}, t.id), el("td", {}, el("span", { class: "badge " + t.state }, t.state)), el("td", {}, t.worker_id),
    el("td", {}, lagText(t.millis_behind_latest)), el("td", {}, t.records),
    el("td", {}, t.position ? JSON.stringify(t.position) : "–"), el("td", {}, t.trace || "")));
  tables.append(el("h2", {}, "Tasks"), el("table", { class: "tasks" },
    el("tr", {}, ...["task", "state", "worker", "lag", "records", "position", "error"].map(x => el("th", {}, x))), ...rows));

  const snaps = document.getElementById("snapshots");
  snaps.replaceChildren();
  for (const s of doc.snapshots || []) {
    const f = s.fraction === null || s.fraction === undefined ? 0 : s.fraction;
    snaps.append(el("div", { class: "snapshot", "data-table": s.table },
      el("h2", {}, `Snapshot of ${s.table} (${s.snapshot})`),
      el("span", { class: "bar" }, el("div", { style: `width:${Math.round(f * 100)}%` })),
      ` ${Math.round(f * 100)}% · ${s.items} items · ETA ${s.eta_seconds === null ? "?" : s.eta_seconds + " s"}`));
  }
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const who = await (await fetch("/", { headers })).json();
    const resp = await fetch(`/connectors/${encodeURIComponent(who.name)}/positions`, { headers });
    if (!resp.ok) throw new Error((await resp.json()).message);
    render(await resp.json());
    err.hidden = true;
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    err.hidden = false;
    err.textContent = "cannot load status: " + e.message;
  }
}

document.getElementById("interval").textContent = REFRESH_MS / 1000;
refresh();
setInterval(refresh, REFRESH_MS);
