// The saga dashboard: list, one saga's timeline, compensations, operator actions. No dependencies.
// The overview, inbox, search, bulk actions and token switching are in overview.js.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { token: localStorage.getItem("sagaToken") || "", me: null, view: null, cursor: null };

// -- helpers ------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const badge = (value) => el("span", { class: `badge ${value || "none"}` }, (value || "—").replace(/_/g, " "));
const when = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
function ago(ms) {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
const errorText = (error) => (error ? `${error.code || "error"}: ${error.message || ""}` : "");

function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) showTokenForm();
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.statusText;
    throw Object.assign(new Error(message), { status: response.status });
  }
  return body;
}

function showTokenForm() {
  $("#token-form").hidden = false;
}

// -- the saga list ---------------------------------------------------------------------------

const STATUSES = ["", "running", "compensating", "stuck", "completed", "compensated"];
const HEALTHS = ["", "progressing", "retrying", "waiting", "needs_attention", "stuck"];

const FORM_FILTERS = ["status", "health", "name", "step"];

function filtersFromHash() {
  // The form's filters, and any other list filter a link or the search put in the hash
  // (saga_id_prefix, input.<field>, time ranges), passed on to GET /api/sagas as they are.
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const filters = Object.fromEntries(FORM_FILTERS.map((key) => [key, query.get(key) || ""]));
  for (const [key, value] of query) if (!FORM_FILTERS.includes(key) && key !== "cursor" && key !== "limit") filters[key] = value;
  return filters;
}

function setFilters(filters) {
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
  location.hash = `#/sagas?${query}`;
}

async function renderList(append = false) {
  const filters = filtersFromHash();
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
  query.set("limit", "50");
  if (append && state.cursor) query.set("cursor", state.cursor);
  const page = await api(`/api/sagas?${query}`);
  state.cursor = page.next_cursor;
  const main = $("#main");
  let body = $("#saga-rows");
  if (!append || !body) {
    const select = (name, options) => el("select", { name, onchange: onFilter },
      options.map((o) => el("option", { value: o, selected: filters[name] === o }, o ? o.replace(/_/g, " ") : "any")));
    main.replaceChildren(
      el("h2", {}, "Sagas"),
      el("form", { class: "filters", id: "filters", onsubmit: (e) => { e.preventDefault(); onFilter(); } },
        el("label", {}, "Status", select("status", STATUSES)),
        el("label", {}, "Health", select("health", HEALTHS)),
        el("label", {}, "Saga name", el("input", { name: "name", value: filters.name, size: 12 })),
        el("label", {}, "Current step", el("input", { name: "step", value: filters.step, size: 12 })),
        el("button", { type: "submit" }, "Filter"),
        searchTerms(filters)),
      bulkBar(),
      el("table", { id: "saga-table" },
        el("thead", {}, el("tr", {}, ["", "Health", "Saga", "Definition", "Status", "Current step", "Owner", "Created", "Updated"].map((h) => el("th", {}, h)))),
        el("tbody", { id: "saga-rows" })),
      el("div", { class: "more", id: "more" }));
    body = $("#saga-rows");
  }
  keepPicks();
  for (const saga of page.sagas) body.append(sagaRow(saga, state.picked.has(saga.saga_id), state.pickAll));
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No sagas match.")));
  onPick();
  $("#more").replaceChildren(state.cursor ? el("button", { onclick: () => renderList(true) }, "Load more") : "");
}

function searchTerms(filters) {
  // The filters the form has no field for (search, drill-down), each shown with a way out.
  const extra = Object.entries(filters).filter(([key, value]) => !FORM_FILTERS.includes(key) && value);
  if (!extra.length) return "";
  const without = (key) => { const rest = { ...filters }; delete rest[key]; return rest; };
  return el("span", { class: "terms", id: "search-terms" }, extra.map(([key, value]) =>
    el("span", { class: "term" }, `${key} = ${value} `, el("a", { href: "#", title: "remove", onclick: (e) => { e.preventDefault(); setFilters(without(key)); } }, "×"))));
}

function sagaRow(saga, picked = false, all = false) {
  return el("tr", { "data-saga": saga.saga_id },
    el("td", {}, el("input", { type: "checkbox", class: "pick", value: saga.saga_id, checked: picked || all, disabled: all, "aria-label": `select ${saga.saga_id}`, onchange: onPick })),
    el("td", {}, badge(saga.health), saga.by_hand ? [" ", byHandBadge()] : ""),
    el("td", {}, el("a", { href: `#/saga/${encodeURIComponent(saga.saga_id)}`, class: "mono" }, saga.saga_id)),
    el("td", {}, `${saga.name} v${saga.version}`),
    el("td", {}, badge(saga.status)),
    el("td", {}, saga.current_step ? (saga.attempt > 1 ? `${saga.current_step} #${saga.attempt}` : saga.current_step) : "—"),
    el("td", { class: "mono owner", title: saga.owner ? `epoch ${saga.epoch}` : "no owner" }, saga.owner || "—"),
    el("td", { title: when(saga.created_ms) }, ago(saga.created_ms)),
    el("td", { title: when(saga.updated_ms) }, ago(saga.updated_ms)));
}

function onFilter() {
  const form = $("#filters");
  setFilters({ ...filtersFromHash(), status: form.status.value, health: form.health.value,
    name: form.name.value.trim(), step: form.step.value.trim() });
}

// -- the compensations view -------------------------------------------------------------------

async function renderCompensations() {
  const page = await api("/api/compensations?limit=200");
  const rows = page.compensations.map((c) => el("tr", { "data-saga": c.saga_id },
    el("td", {}, badge(c.category), c.by_hand ? [" ", byHandBadge()] : ""),
    el("td", {}, el("a", { href: `#/saga/${encodeURIComponent(c.saga_id)}`, class: "mono" }, c.saga_id)),
    el("td", {}, `${c.name} v${c.version}`),
    el("td", {}, c.step ? `${c.step} (${c.direction})` : "—"),
    el("td", {}, c.attempts ?? "—"),
    el("td", { class: "error" }, errorText(c.last_error) || (c.reason || "")),
    el("td", {}, c.remaining.join(" ← ") || "—"),
    el("td", { title: when(c.since_ms) }, ago(c.since_ms))));
  $("#main").replaceChildren(
    el("h2", {}, "Compensations"),
    el("p", { class: "muted" }, "Sagas compensating now, compensations that keep failing, and stuck sagas waiting for an operator."),
    el("table", { id: "compensation-table" },
      el("thead", {}, el("tr", {}, ["State", "Saga", "Definition", "Failing step", "Attempts", "Last error", "Still to undo", "Since"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "Nothing is compensating.")))));
}

// -- flow control per service -----------------------------------------------------------------

async function renderServices() {
  const page = await api("/api/services");
  const rows = page.services.map((s) => el("tr", { "data-service": s.service },
    el("td", { class: "mono" }, s.service),
    el("td", {}, s.queued),
    el("td", {}, s.in_flight),
    el("td", {}, s.limit ?? "unbounded")));
  $("#main").replaceChildren(
    el("h2", {}, "Services"),
    el("p", { class: "muted" }, "Commands waiting in the coordinator for a slot, commands in flight, and the current in-flight limit, per service. A waiting command's step timeout has not started."),
    el("table", { id: "service-table" },
      el("thead", {}, el("tr", {}, ["Service", "Queued", "In flight", "Limit"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No commands sent yet.")))));
}

// -- the coordinators sharing the log ---------------------------------------------------------

// Only a plain web address becomes a link: another coordinator wrote it into the shared log.
function webLink(url) {
  if (!url) return "—";
  let parsed = null;
  try { parsed = new URL(url); } catch (error) { parsed = null; }
  if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) return url;
  return el("a", { href: parsed.href, rel: "noopener noreferrer", target: "_blank", class: "mono" }, url);
}

function leaseText(c, nowMs) {
  if (c.state === "stopped") return `stopped ${ago(c.stopped_ms)}`;
  const left = Math.round((c.lease_until_ms - nowMs) / 1000);
  if (c.state === "live") return `${Math.max(left, 0)}s left`;
  return `expired ${-left}s ago`;
}

async function renderCoordinators() {
  const page = await api("/api/coordinators");
  const rows = page.coordinators.map((c) => el("tr", { "data-coordinator": c.coordinator_id, class: c.self ? "self" : null },
    el("td", {}, c.name, c.self ? el("span", { class: "muted" }, " (this one)") : ""),
    el("td", { class: "mono" }, c.coordinator_id),
    el("td", {}, badge(c.state)),
    el("td", { title: `lease until ${when(c.lease_until_ms)}; renewed ${when(c.renewed_ms)}` }, leaseText(c, page.now_ms)),
    el("td", {}, c.sagas),
    el("td", {}, c.in_flight),
    el("td", {}, c.fenced_writes),
    el("td", {}, webLink(c.api_url))));
  $("#main").replaceChildren(
    el("h2", {}, "Coordinators"),
    el("p", { class: "muted" }, `Coordinators sharing the saga log, live and ended in the last 10 minutes, with their load at their last renewal (every ${page.lease_ms / 4000}s). Each unfinished saga is owned by one of them; an operator action through any coordinator takes the saga over.`),
    el("table", { id: "coordinator-table" },
      el("thead", {}, el("tr", {}, ["Name", "Id", "State", "Lease", "Sagas", "In flight", "Fenced writes", "API"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No coordinators.")))));
}

// -- one saga ----------------------------------------------------------------------------------

const COLORS = { succeeded: "#2e7d32", rejected: "#e65100", failed: "#c62828", stuck: "#c62828",
  in_flight: "#1565c0", accepted: "#00838f", awaiting: "#8e24aa", waiting: "#b26a00", pending: "#c3c8d0",
  done_by_hand: "#6a1b9a", compensated: "#5d6b7a", compensating: "#b26a00" };
const short = (ms) => (ms ? new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "—");
const words = (value) => String(value).replace(/_/g, " ");

// What an entry is doing, in two short lines: its state (a wait's with its event), and an
// accepted step's deadline, a wait's timeout or the event it took.
function entryLines(entry) {
  const last = entry.attempts[entry.attempts.length - 1];
  if (entry.state === "accepted" && last) {
    return ["accepted", `until ${short(last.deadline_ms)}` + (last.heartbeats ? ` · ${last.heartbeats} heartbeats` : "")];
  }
  if (entry.state === "awaiting") return [`awaiting ${entry.event}`, `until ${short(last && last.deadline_ms)}`];
  if (entry.event && entry.state === "pending") return ["pending", `will wait for ${entry.event}`];
  if (entry.event && entry.signal) return [words(entry.state), `took event ${entry.signal}`];
  return [words(entry.state), ""];
}

function entryTip(entry) {
  const tip = [`${entry.step} (${entry.direction}): ${words(entry.state)}`];
  const [, detail] = entryLines(entry);
  if (entry.event) tip.push(`waits for ${entry.event}`);
  if (detail) tip.push(detail);
  if (entry.after && entry.after.length) tip.push(`after ${entry.after.join(", ")}`);
  if (entry.by_hand) tip.push(`${entry.by_hand.action} by ${entry.by_hand.actor}: ${entry.by_hand.reason}`);
  return tip.join("\n");
}

// Columns by dependency depth (from `after`), so parallel entries share a column.
function depths(entries, fallbackSequential) {
  const byName = new Map(entries.map((e) => [e.step, e]));
  const depth = new Map();
  const visit = (entry, path) => {
    if (depth.has(entry.step)) return depth.get(entry.step);
    if (path.has(entry.step)) return 0;
    path.add(entry.step);
    const before = (entry.after || []).filter((n) => byName.has(n)).map((n) => visit(byName.get(n), path));
    const d = before.length ? Math.max(...before) + 1 : 0;
    depth.set(entry.step, d);
    return d;
  };
  if (fallbackSequential) entries.forEach((e, i) => depth.set(e.step, i));
  else entries.forEach((e) => visit(e, new Set()));
  return depth;
}

// Rows: an entry's lane (entries in flight together have different lanes), else the row of
// the entry it came after; a taken cell moves it down.
function placeRows(entries, column, rowOf = new Map()) {
  const taken = new Set();
  const place = (entry, wanted) => {
    let row = Math.max(0, wanted);
    while (taken.has(`${column(entry)}/${row}`)) row += 1;
    taken.add(`${column(entry)}/${row}`);
    rowOf.set(entry.step, row);
  };
  for (const entry of entries) if (entry.lane !== null && entry.lane !== undefined) place(entry, entry.lane);
  for (const entry of entries) {
    if (rowOf.has(entry.step)) continue;
    const from = (entry.after || []).find((n) => rowOf.has(n));
    place(entry, from === undefined ? 0 : rowOf.get(from));
  }
  return rowOf;
}

function arrowDefs() {
  return svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#7a8290" })));
}

function edge(x1, y1, x2, y2, dashed = false) {
  const mid = (x1 + x2) / 2;
  return svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, fill: "none", stroke: "#7a8290",
    "stroke-width": 1.5, "marker-end": "url(#arrow)", "stroke-dasharray": dashed ? "4 3" : "none", class: "edge" });
}

function drawTimeline(timeline) {
  const steps = timeline.steps;
  const comps = timeline.compensations;
  const boxW = 180, boxH = 52, gapX = 46, gapY = 26, left = 110, top = 16;
  const linked = steps.some((s) => s.after && s.after.length);
  const column = depths(steps, !linked);
  const rowOf = placeRows(steps, (e) => column.get(e.step));
  const forwardRows = Math.max(1, ...[...rowOf.values()].map((r) => r + 1));
  const rowH = boxH + gapY + 8;
  const compTop = top + forwardRows * rowH + 30;
  // A compensation sits under its step's column; one for a step not run stays at the left.
  const compColumn = (e) => (column.has(e.step) ? column.get(e.step) : 0);
  const compRow = placeRows(comps, compColumn);
  const compRows = comps.length ? Math.max(1, ...[...compRow.values()].map((r) => r + 1)) : 0;
  const columns = Math.max(1, ...[...column.values()].map((c) => c + 1));
  const width = left + columns * (boxW + gapX) + 20;
  const height = (comps.length ? compTop + compRows * rowH : top + forwardRows * rowH) + 10;
  const x = (c) => left + c * (boxW + gapX);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "saga timeline: steps forward, branches side by side, compensations back" });
  root.append(arrowDefs());
  root.append(svg("text", { x: 8, y: top + 30, "font-size": 12, fill: "#6b7280" }, "forward →"));
  if (comps.length) root.append(svg("text", { x: 8, y: compTop + 30, "font-size": 12, fill: "#6b7280" }, "← compensate"));

  const box = (entry, cx, y, lane) => {
    const color = COLORS[entry.state] || "#9aa1ad";
    const g = svg("g", { class: `step ${lane}`, "data-step": entry.step, "data-state": entry.state,
      "data-lane": entry.lane ?? "", "data-column": cx });
    g.append(svg("title", {}, entryTip(entry)));
    g.append(svg("rect", { x: x(cx), y, width: boxW, height: boxH, rx: 7, fill: entry.state === "pending" ? "#f3f4f6" : "#fff",
      stroke: color, "stroke-width": 2.5, "stroke-dasharray": entry.state === "pending" ? "5 4" : "none" }));
    const [label, detail] = entryLines(entry);
    g.append(svg("text", { x: x(cx) + 10, y: y + 17, "font-size": 13, "font-weight": 600, fill: "#1d2330" }, entry.step));
    g.append(svg("text", { x: x(cx) + 10, y: y + 32, "font-size": 11, fill: color, class: "state" }, label));
    if (detail) g.append(svg("text", { x: x(cx) + 10, y: y + 46, "font-size": 10.5, fill: "#4b5563", class: "detail" }, detail));
    entry.attempts.forEach((a, k) => {
      if (k > 9) return;
      const dot = svg("circle", { cx: x(cx) + 12 + k * 14, cy: y + boxH + 10, r: 5, fill: COLORS[a.outcome] || "#9aa1ad", class: `attempt ${a.outcome}` });
      dot.append(svg("title", {}, `attempt ${a.attempt}: ${words(a.outcome)} at ${when(a.sent_ms)}` + (a.error ? `\n${errorText(a.error)}` : "")));
      g.append(dot);
    });
    if (entry.attempts.length > 1) {
      g.append(svg("text", { x: x(cx) + boxW - 6, y: y + boxH + 14, "font-size": 11, "text-anchor": "end", fill: "#6b7280" },
        `${entry.attempts.length} attempts`));
    }
    return g;
  };
  const fy = (entry) => top + rowOf.get(entry.step) * rowH;
  const cy = (entry) => compTop + compRow.get(entry.step) * rowH;
  const forwardByName = new Map(steps.map((e) => [e.step, e]));
  steps.forEach((entry, i) => {
    const c = column.get(entry.step);
    const sources = linked ? (entry.after || []).filter((n) => forwardByName.has(n)).map((n) => forwardByName.get(n))
      : (i > 0 ? [steps[i - 1]] : []);
    for (const from of sources) {
      root.append(edge(x(column.get(from.step)) + boxW, fy(from) + boxH / 2, x(c) - 3, fy(entry) + boxH / 2));
    }
  });
  steps.forEach((entry) => root.append(box(entry, column.get(entry.step), fy(entry), "forward")));
  const compByName = new Map(comps.map((e) => [e.step, e]));
  comps.forEach((entry, i) => {
    const c = compColumn(entry);
    let sources = (entry.after || []).filter((n) => compByName.has(n)).map((n) => compByName.get(n));
    if (!linked && i > 0) sources = [comps[i - 1]];
    for (const from of sources) {
      root.append(edge(x(compColumn(from)), cy(from) + boxH / 2, x(c) + boxW + 3, cy(entry) + boxH / 2));
    }
    if (i === 0 && !sources.length && forwardByName.has(entry.step)) {
      // The turn back: from below the forward lanes down to the first compensation.
      root.append(svg("line", { x1: x(c) + boxW / 2, y1: top + forwardRows * rowH - 6, x2: x(c) + boxW / 2, y2: cy(entry) - 3,
        stroke: "#7a8290", "stroke-width": 1.5, "stroke-dasharray": "4 3", "marker-end": "url(#arrow)" }));
    }
  });
  comps.forEach((entry) => root.append(box(entry, compColumn(entry), cy(entry), "compensation")));
  return el("div", { class: "timeline" }, root, legend());
}

function legend() {
  return el("div", { class: "legend" }, Object.entries(COLORS).map(([k, c]) => {
    const dot = el("i"); dot.style.background = c; return el("span", {}, dot, words(k));
  }));
}

// -- the definition as a graph, with the saga's progress on it ---------------------------------

// One state per step of the definition: its compensation's when it has one, else its own.
function progressOf(definition, timeline) {
  const forward = new Map(timeline.steps.map((e) => [e.step, e]));
  const back = new Map(timeline.compensations.map((e) => [e.step, e]));
  const found = new Map();
  for (const step of definition.steps) {
    const entry = forward.get(step.name);
    const comp = back.get(step.name);
    let status = entry ? entry.state : "pending";
    let detail = entry ? entryLines(entry)[1] : "";
    if (comp && comp.state !== "pending") {
      const undone = comp.state === "succeeded" || comp.state === "done_by_hand";
      status = undone ? "compensated"
        : (["failed", "stuck", "rejected"].includes(comp.state) ? comp.state : "compensating");
      detail = comp.state === "done_by_hand" ? "by hand" : (undone ? "" : `compensation ${words(comp.state)}`);
    } else if (comp) {
      detail = "to compensate";
    }
    found.set(step.name, { status, detail, entry, comp });
  }
  return found;
}

function drawGraph(definition, timeline) {
  const boxW = 200, boxH = 70, gapX = 54, gapY = 18, pad = 12;
  const layers = new Map();
  for (const step of definition.steps) {
    if (!layers.has(step.depth)) layers.set(step.depth, []);
    layers.get(step.depth).push(step);
  }
  const pos = new Map();
  for (const [depth, steps] of layers) steps.forEach((s, row) => pos.set(s.name, { c: depth, r: row }));
  const columns = Math.max(...layers.keys()) + 1;
  const rows = Math.max(...[...layers.values()].map((l) => l.length));
  const width = pad * 2 + columns * boxW + (columns - 1) * gapX;
  const height = pad * 2 + rows * boxH + (rows - 1) * gapY;
  // Center each layer vertically, so a fan-out and its join line up.
  const y = (name) => {
    const { c, r } = pos.get(name);
    const count = layers.get(c).length;
    return pad + ((rows - count) * (boxH + gapY)) / 2 + r * (boxH + gapY);
  };
  const x = (name) => pad + pos.get(name).c * (boxW + gapX);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", id: "graph",
    "aria-label": `saga definition ${definition.name} v${definition.version} as a graph, with this saga's progress` });
  root.append(arrowDefs());
  for (const step of definition.steps) {
    for (const from of step.after) root.append(edge(x(from) + boxW, y(from) + boxH / 2, x(step.name) - 3, y(step.name) + boxH / 2));
  }
  const progress = progressOf(definition, timeline);
  for (const step of definition.steps) {
    const { status, detail } = progress.get(step.name);
    const color = COLORS[status] || "#9aa1ad";
    const g = svg("g", { class: `node ${step.kind}`, "data-step": step.name, "data-state": status });
    const kind = step.kind === "wait" ? `wait for ${step.event}` : `${step.service}.${step.command}` +
      (step.long_running ? " · long" : "") + (step.kind === "compensatable" ? "" : ` · ${step.kind}`);
    g.append(svg("title", {}, [`${step.name}: ${words(status)}`, kind, detail,
      step.after.length ? `after ${step.after.join(", ")}` : "starts with the saga"].filter(Boolean).join("\n")));
    g.append(svg("rect", { x: x(step.name), y: y(step.name), width: boxW, height: boxH, rx: step.kind === "wait" ? 18 : 7,
      fill: status === "pending" ? "#f3f4f6" : "#fff", stroke: color, "stroke-width": step.kind === "pivot" ? 4 : 2.5,
      "stroke-dasharray": status === "pending" ? "5 4" : "none" }));
    g.append(svg("text", { x: x(step.name) + 10, y: y(step.name) + 17, "font-size": 13, "font-weight": 600, fill: "#1d2330" }, step.name));
    g.append(svg("text", { x: x(step.name) + 10, y: y(step.name) + 31, "font-size": 10.5, fill: "#6b7280" }, kind));
    g.append(svg("text", { x: x(step.name) + 10, y: y(step.name) + 47, "font-size": 11, fill: color, class: "status" }, words(status)));
    if (detail) g.append(svg("text", { x: x(step.name) + 10, y: y(step.name) + 61, "font-size": 10.5, fill: "#4b5563", class: "detail" }, detail));
    root.append(g);
  }
  return el("div", { class: "graph" }, root);
}

function activeTable(active) {
  const rows = active.map((a) => el("tr", { "data-step": a.step },
    el("td", {}, a.step), el("td", {}, a.direction), el("td", {}, badge(a.phase)), el("td", {}, a.attempt ?? "—"),
    el("td", {}, a.phase === "accepted" ? `completes by ${when(a.deadline_ms)}` + (a.heartbeats ? ` (${a.heartbeats} heartbeats)` : "")
      : a.phase === "awaiting" ? `waits for ${a.waiting_for} until ${when(a.timeout_at_ms)}`
        : a.retry_at_ms ? `next try ${when(a.retry_at_ms)}` : "")));
  return el("table", { id: "active" },
    el("thead", {}, el("tr", {}, ["Step", "Direction", "Phase", "Attempt", "Until"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "Nothing in progress."))));
}

function signalsTable(signals) {
  const rows = signals.map((s) => el("tr", { "data-signal": s.id },
    el("td", {}, when(s.at_ms)), el("td", { class: "mono" }, s.event), el("td", { class: "mono" }, s.id),
    el("td", {}, s.sender || "—"), el("td", {}, s.step || el("span", { class: "muted" }, "kept for later"))));
  return el("table", { id: "signals" },
    el("thead", {}, el("tr", {}, ["When", "Event", "Id", "Sender", "Taken by"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function attemptsTable(timeline) {
  const rows = [];
  for (const entry of [...timeline.steps, ...timeline.compensations]) {
    for (const a of entry.attempts) {
      rows.push(el("tr", {},
        el("td", {}, entry.step), el("td", {}, entry.direction), el("td", {}, a.attempt),
        el("td", {}, badge(a.outcome)), el("td", {}, when(a.sent_ms)),
        el("td", { class: "error" }, errorText(a.error)),
        el("td", {}, a.retry_at_ms ? when(a.retry_at_ms) : ""),
        el("td", {}, a.deadline_ms ? (a.outcome === "awaiting" ? `${entry.event} by ` : "") + when(a.deadline_ms) : "")));
    }
  }
  return el("table", { id: "attempts" },
    el("thead", {}, el("tr", {}, ["Step", "Direction", "Attempt", "Outcome", "Sent", "Error", "Retry at", "Deadline"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

const ACTION_HELP = {
  retry: "Retry the current step or compensation now (a stuck one gets a fresh attempt budget).",
  cancel: "Compensate this saga: undo its done steps in reverse order.",
  resolve: "Mark the failing compensation as done by hand (you undid it yourself), and go on compensating.",
  skip: "Mark the failing forward step as done by hand, and go on.",
  force_forward: "At or past the pivot: take the pivot as done, or retry the failing step without limit.",
};

async function renderSaga(sagaId) {
  const saga = await api(`/api/sagas/${encodeURIComponent(sagaId)}`);
  state.saga = saga;
  const health = saga.health;
  const canAct = state.me && state.me.role === "operator";
  const buttons = Object.entries(saga.actions).map(([action, fit]) =>
    el("button", { "data-action": action, disabled: !fit.allowed || !canAct,
      title: fit.allowed ? (canAct ? ACTION_HELP[action] : "needs the operator role") : fit.reason,
      onclick: () => openAction(saga.saga_id, action) }, action.replace("_", " ")));
  const facts = [["Definition", `${saga.name} v${saga.version}`], ["Status", badge(saga.status)],
    ["Health", health ? el("span", {}, badge(health.state), " ", healthText(health)) : "finished"],
    ["Owner", saga.owner ? el("span", {}, el("span", { class: "mono" }, saga.owner), ` (epoch ${saga.epoch})`) : "none"],
    ["Created", when(saga.created_ms)], ["Updated", when(saga.updated_ms)]];
  if (saga.compensation) facts.push(["Compensating because", saga.compensation.reason || "—"]);
  if (saga.stuck) facts.push(["Stuck", el("span", { class: "error" }, saga.stuck.reason || saga.stuck.code)]);
  const audit = saga.timeline.operator_actions.map((a) => el("tr", {},
    el("td", {}, when(a.at_ms)), el("td", {}, a.action), el("td", {}, a.actor),
    el("td", {}, a.step ? `${a.step} (${a.direction})` : "—"), el("td", {}, a.reason)));
  $("#main").replaceChildren(
    el("h2", {}, "Saga ", el("span", { class: "mono" }, saga.saga_id)),
    el("div", { class: "card" },
      el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      el("div", { class: "actions" }, buttons)),
    saga.definition ? el("div", { class: "card" }, el("h3", {}, "Graph"), drawGraph(saga.definition, saga.timeline)) : "",
    el("div", { class: "card" }, el("h3", {}, "Timeline"), drawTimeline(saga.timeline)),
    el("h3", {}, "In progress"), activeTable(saga.active || []),
    (saga.signals || []).length ? el("div", {}, el("h3", {}, "Outside events"), signalsTable(saga.signals)) : "",
    el("h3", {}, "Attempts"), attemptsTable(saga.timeline),
    el("h3", {}, "Operator actions"),
    el("table", { id: "audit" },
      el("thead", {}, el("tr", {}, ["When", "Action", "Who", "Step", "Why"].map((h) => el("th", {}, h)))),
      el("tbody", {}, audit.length ? audit : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "None.")))),
    el("h3", {}, "Input"), el("pre", {}, JSON.stringify(saga.input, null, 2)),
    el("h3", {}, "Results"), el("pre", {}, JSON.stringify(saga.results, null, 2)));
}

function healthText(h) {
  const parts = [];
  if (h.step) parts.push(`${h.step} (${h.direction}), attempt ${h.attempt}`);
  if (h.retry_at_ms) parts.push(`next try ${when(h.retry_at_ms)}`);
  if (h.reason) parts.push(h.reason);
  else if (h.last_error) parts.push(errorText(h.last_error));
  return parts.join(" · ");
}

// -- operator actions: reason, dry run, confirm -----------------------------------------------

function openAction(sagaId, action) {
  const dialog = $("#action-dialog");
  state.pending = { sagaId, action };
  $("#action-title").textContent = `${action.replace("_", " ")} saga ${sagaId}`;
  $("#action-help").textContent = ACTION_HELP[action];
  $("#action-reason").value = "";
  $("#action-preview").replaceChildren();
  $("#action-error").textContent = "";
  $("#action-confirm").disabled = true;
  dialog.showModal();
}

async function runAction(dryRun) {
  const { sagaId, action } = state.pending;
  const reason = $("#action-reason").value.trim();
  $("#action-error").textContent = "";
  if (!reason) { $("#action-error").textContent = "A reason is required."; return; }
  try {
    const path = `/api/sagas/${encodeURIComponent(sagaId)}/actions/${action}${dryRun ? "?dry_run=1" : ""}`;
    const answer = await api(path, { method: "POST", body: { reason } });
    if (dryRun) {
      showPreview(answer);
      $("#action-confirm").disabled = false;
    } else {
      $("#action-dialog").close();
      toast(`${action.replace("_", " ")} recorded for ${sagaId}`);
      await route();
    }
  } catch (error) {
    $("#action-error").textContent = `${error.status || ""} ${error.message}`;
    $("#action-confirm").disabled = true;
  }
}

function showPreview(p) {
  const commands = p.commands.map((c) => el("li", {}, `send ${c.service}.${c.command} (${c.step}, ${c.direction}, attempt ${c.attempt})`));
  $("#action-preview").replaceChildren(
    el("strong", {}, "Dry run: this would happen"),
    el("p", {}, "Saga becomes ", badge(p.status), p.health ? [" health ", badge(p.health)] : ""),
    p.compensations.length ? el("div", {}, "Compensations still to run, in order:",
      el("ol", { id: "preview-compensations" }, p.compensations.map((c) => el("li", {}, c)))) : el("p", { class: "muted" }, "No compensations to run."),
    commands.length ? el("div", {}, "Next:", el("ol", {}, commands)) : "");
}

// -- live updates over server-sent events (fetch, so the token goes in a header) ------------

async function listen() {
  const live = $("#live");
  for (;;) {
    try {
      const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
      const response = await fetch("/api/events", { headers });
      if (!response.ok) throw new Error(`events: ${response.status}`);
      live.textContent = "live"; live.className = "live on";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) onChange(JSON.parse(data));
        }
      }
    } catch (error) {
      /* reconnect below */
    }
    live.textContent = "offline"; live.className = "live off";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function onChange(change) {
  clearTimeout(onChange.timer);
  clearTimeout(onChange.counts);
  onChange.counts = setTimeout(refreshCounts, 250);
  onChange.timer = setTimeout(async () => {
    if (state.view === "saga" && (!state.saga || state.saga.saga_id !== change.saga_id)) return;
    if ($("#action-dialog").open || $("#bulk-dialog").open) return;
    await route();
    const row = document.querySelector(`tr[data-saga="${CSS.escape(change.saga_id)}"]`);
    if (row) row.classList.add("flash");
  }, 250);
}

// -- routing -----------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/";
  document.querySelectorAll("nav a").forEach((a) => a.classList.remove("active"));
  try {
    if (hash.startsWith("#/saga/")) {
      state.view = "saga";
      await renderSaga(decodeURIComponent(hash.slice(7)));
    } else if (hash.startsWith("#/services")) {
      state.view = "services";
      $('nav a[data-nav="services"]').classList.add("active");
      await renderServices();
    } else if (hash.startsWith("#/coordinators")) {
      state.view = "coordinators";
      $('nav a[data-nav="coordinators"]').classList.add("active");
      await renderCoordinators();
    } else if (hash.startsWith("#/compensations")) {
      state.view = "compensations";
      $('nav a[data-nav="compensations"]').classList.add("active");
      await renderCompensations();
    } else if (hash.startsWith("#/inbox")) {
      state.view = "inbox";
      $('nav a[data-nav="inbox"]').classList.add("active");
      await renderInbox();
    } else if (hash.startsWith("#/sagas") || hash.startsWith("#/?")) {
      state.view = "list";
      $('nav a[data-nav="list"]').classList.add("active");
      await renderList();
    } else {
      state.view = "overview";
      $('nav a[data-nav="overview"]').classList.add("active");
      await renderOverview();
    }
  } catch (error) {
    $("#main").replaceChildren(el("p", { class: "error" }, `${error.status || ""} ${error.message}`));
  }
}

async function whoAmI() {
  try {
    state.me = await api("/api/me");
    $("#who").textContent = state.me.auth ? `${state.me.name} (${state.me.role})` : "no auth (local dev)";
    $("#token-form").hidden = true;
    $("#sign-out").hidden = !state.me.auth;
    $("#switch-token").hidden = !state.me.auth;
    refreshCounts();
  } catch (error) {
    state.me = null;
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.token = $("#token").value.trim();
    localStorage.setItem("sagaToken", state.token);
    await whoAmI();
    await route();
  });
  $("#action-cancel").addEventListener("click", () => $("#action-dialog").close());
  $("#action-dry").addEventListener("click", () => runAction(true));
  $("#action-confirm").addEventListener("click", () => runAction(false));
  window.addEventListener("hashchange", route);
  await whoAmI();
  await route();
  listen();
});
