// The operator's pages: overview with charts, inbox, search, bulk actions, token switching.
// Uses app.js's helpers (el, svg, api, badge, state, route...); loaded after it. No dependencies.
"use strict";

const NUMBER = new Intl.NumberFormat();
const MINUTE = 60000;

function listLink(params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined));
  return `#/sagas?${query}`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

// -- the counts in the navigation ---------------------------------------------------------------

async function refreshCounts() {
  if (!state.me) return;
  try {
    const stats = await api("/api/stats?minutes=1");
    setCount("#nav-stuck", stats.stuck, "stuck");
    setCount("#nav-attention", stats.needs_attention, stats.needs_attention === 1 ? "needs attention" : "need attention");
  } catch (error) {
    /* the next tick tries again */
  }
}

function setCount(selector, count, words) {
  const node = $(selector);
  if (!node) return;
  node.textContent = `${NUMBER.format(count)} ${words}`;
  node.dataset.count = String(count);
  node.classList.toggle("zero", count === 0);
}

// -- overview -----------------------------------------------------------------------------------

const WINDOWS = [15, 60, 360, 1440];

async function renderOverview() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const minutes = WINDOWS.includes(Number(query.get("minutes"))) ? Number(query.get("minutes")) : 60;
  const stats = await api(`/api/stats?minutes=${minutes}`);
  const countCard = (kind, value, count, href) => el("a", { class: `count-card ${value}`, href, "data-count": `${kind}:${value}` },
    el("span", { class: "count-number" }, NUMBER.format(count)), el("span", { class: "count-label" }, value.replace(/_/g, " ")));
  const statuses = Object.entries(stats.statuses).map(([s, n]) => countCard("status", s, n, listLink({ status: s })));
  const healths = Object.entries(stats.healths).map(([h, n]) => countCard("health", h, n, listLink({ health: h })));
  const picker = el("select", { id: "window", onchange: (e) => { location.hash = `#/overview?minutes=${e.target.value}`; } },
    WINDOWS.map((m) => el("option", { value: m, selected: m === minutes }, m < 60 ? `last ${m} min` : `last ${m / 60} h`)));
  $("#main").replaceChildren(
    el("div", { class: "overview-head" }, el("h2", {}, "Overview"), el("label", { class: "muted" }, "Window ", picker)),
    el("div", { class: "card" }, el("h3", {}, "Sagas by status"), el("div", { class: "counts", id: "status-counts" }, statuses)),
    el("div", { class: "card" }, el("h3", {}, "Unfinished sagas by health"), el("div", { class: "counts", id: "health-counts" }, healths)),
    el("div", { class: "card" }, el("h3", {}, "Per minute"), seriesCharts(stats.series)),
    el("div", { class: "charts-row" },
      el("div", { class: "card" }, el("h3", {}, "Compensation rate and duration per saga (finished in the window)"), byName(stats.by_name)),
      el("div", { class: "card" }, el("h3", {}, "Steps that fail most"), failingSteps(stats.failing_steps))));
}

// Each series is drawn in its meaning's colour (saga.js's palette, app.css's --c-* variables).
const SERIES = [
  ["started", "running", (m) => ({ created_after: m.start_ms, created_before: m.start_ms + MINUTE })],
  ["completed", "completed", (m) => ({ status: "completed", updated_after: m.start_ms, updated_before: m.start_ms + MINUTE })],
  ["compensated", "compensated", (m) => ({ status: "compensated", updated_after: m.start_ms, updated_before: m.start_ms + MINUTE })],
  ["stuck", "stuck", () => ({ health: "stuck" })],
];

function seriesCharts(series) {
  return el("div", { class: "series" }, SERIES.map(([key, meaning, filter]) => barChart(key, colour(meaning), series, filter)));
}

function barChart(key, color, series, filter) {
  const width = 560, height = 120, left = 34, bottom = 18;
  const top = Math.max(1, ...series.map((m) => m[key]));
  const slot = (width - left) / series.length;
  const plot = height - bottom;
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart", "data-chart": key, role: "img" });
  chart.append(svg("title", {}, `${key} per minute`));
  chart.append(svg("line", { x1: left, y1: plot + 0.5, x2: width, y2: plot + 0.5, stroke: "#d9dde5" }));
  chart.append(svg("text", { x: left - 4, y: 10, "text-anchor": "end", class: "axis" }, String(top)));
  chart.append(svg("text", { x: left - 4, y: plot, "text-anchor": "end", class: "axis" }, "0"));
  series.forEach((m, i) => {
    const value = m[key];
    const h = Math.round((value / top) * (plot - 4));
    const x = left + i * slot;
    if (value > 0) {
      const bar = svg("rect", { x: x + 0.5, y: plot - h, width: Math.max(1, slot - 1), height: h, fill: color,
        class: "bar", "data-minute": m.start_ms, "data-value": value, tabindex: 0 });
      bar.append(svg("title", {}, `${clock(m.start_ms)}: ${value} ${key}`));
      const drill = () => { location.hash = listLink(filter(m)); };
      bar.addEventListener("click", drill);
      bar.addEventListener("keydown", (e) => { if (e.key === "Enter") drill(); });
      chart.append(bar);
    }
  });
  const ticks = Math.min(6, series.length);
  for (let t = 0; t < ticks; t++) {
    const i = Math.floor((t * (series.length - 1)) / Math.max(1, ticks - 1));
    const anchor = t === 0 ? "start" : t === ticks - 1 ? "end" : "middle";
    const x = t === 0 ? left : t === ticks - 1 ? width : left + i * slot + slot / 2;
    chart.append(svg("text", { x, y: height - 4, "text-anchor": anchor, class: "axis" }, clock(series[i].start_ms)));
  }
  const total = series.reduce((sum, m) => sum + m[key], 0);
  return el("figure", { class: "series-chart" }, el("figcaption", {}, el("i", { style: `background:${color}` }), `${key}: ${NUMBER.format(total)}`), chart);
}

function hbars(rows, { label, value, max, text, href, color, id }) {
  if (!rows.length) return el("p", { class: "muted" }, "Nothing in this window.");
  const width = 560, row = 26, left = 190;
  const chart = svg("svg", { width, height: rows.length * row + 4, class: "chart", id });
  rows.forEach((r, i) => {
    const y = i * row + 4;
    const w = Math.max(2, Math.round((value(r) / max) * (width - left - 150)));
    const link = svg("a", { href: href(r), class: "hbar" });
    link.append(svg("text", { x: left - 8, y: y + 15, "text-anchor": "end" }, label(r)),
      svg("rect", { x: left, y: y + 3, width: w, height: 16, fill: color(r), rx: 2 }),
      svg("text", { x: left + w + 6, y: y + 15, class: "axis" }, text(r)));
    chart.append(link);
  });
  return chart;
}

function byName(names) {
  return hbars(names, {
    id: "by-name", max: 1, label: (n) => n.name, value: (n) => Math.max(n.compensation_rate, 0.004),
    color: (n) => colour(n.compensation_rate > 0.2 ? "failed" : n.compensation_rate > 0 ? "compensated" : "completed"),
    text: (n) => `${Math.round(n.compensation_rate * 100)}% compensated · p50 ${duration(n.p50_ms)} · p99 ${duration(n.p99_ms)}`,
    href: (n) => listLink({ name: n.name, status: "compensated" }),
  });
}

function failingSteps(steps) {
  const max = Math.max(1, ...steps.map((s) => s.failures));
  return hbars(steps, {
    id: "failing-steps", max, label: (s) => `${s.name} · ${s.step}${s.direction === "compensate" ? " (undo)" : ""}`,
    value: (s) => s.failures, color: (s) => colour(s.direction === "compensate" ? "stuck" : "failed"),
    text: (s) => `${NUMBER.format(s.failures)} failed attempt${s.failures === 1 ? "" : "s"}`,
    href: (s) => listLink({ name: s.name, step: s.step }),
  });
}

// -- inbox --------------------------------------------------------------------------------------

async function renderInbox() {
  const inbox = await api("/api/inbox");
  const operator = state.me && state.me.role === "operator";
  const rows = inbox.items.map((item) => el("tr", { "data-saga": item.saga_id, "data-kind": item.kind },
    el("td", {}, badge(item.kind), item.by_hand ? [" ", byHandBadge()] : ""),
    el("td", {}, el("a", { href: `#/saga/${encodeURIComponent(item.saga_id)}`, class: "mono" }, item.saga_id), el("div", { class: "muted" }, item.name)),
    el("td", { class: "reason" }, item.reason),
    el("td", {}, item.service || "—", item.step ? el("div", { class: "muted" }, `${item.step} (${item.direction === "compensate" ? "undo" : "forward"})`) : ""),
    el("td", {}, item.attempts ?? "—"),
    el("td", { title: `first failure ${when(item.since_ms)}; last update ${when(item.updated_ms)}` }, ago(item.since_ms)),
    el("td", {}, el("div", { class: "inbox-actions" }, item.actions.length
      ? item.actions.map((a) => el("button", { "data-action": a, disabled: !operator, title: operator ? ACTION_HELP[a] : "needs an operator token",
        onclick: () => openAction(item.saga_id, a) }, a.replace("_", " ")))
      : el("span", { class: "muted" }, "none fits")))));
  const c = inbox.counts;
  $("#main").replaceChildren(
    el("h2", {}, "Inbox"),
    el("p", { class: "muted" }, `What needs a person: ${c.stuck} stuck, ${c.needs_attention} needing attention, ${c.failing_compensation} failing compensations. Oldest trouble first.`),
    el("table", { id: "inbox-table" },
      el("thead", {}, el("tr", {}, ["Kind", "Saga", "Why", "Service", "Attempts", "Since", "Actions"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 7, class: "muted" }, "Nothing needs a person.")))));
}

const byHandBadge = () => el("span", { class: "badge done_by_hand by-hand", title: "an operator resolved, skipped or forced a step" }, "by hand");

// -- search -------------------------------------------------------------------------------------

async function search(text) {
  const value = text.trim();
  if (!value) return;
  const field = value.match(/^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$/);
  if (field) { location.hash = listLink({ [`input.${field[1]}`]: field[2].trim() }); return; }
  if (value.endsWith("*")) { location.hash = listLink({ saga_id_prefix: value.slice(0, -1) }); return; }
  try {
    const exact = await api(`/api/sagas?saga_id=${encodeURIComponent(value)}&limit=1`);
    if (exact.sagas.length) { location.hash = `#/saga/${encodeURIComponent(value)}`; return; }
  } catch (error) {
    toast(error.message);
    return;
  }
  location.hash = listLink({ saga_id_prefix: value });
}

// -- bulk actions ---------------------------------------------------------------------------------

const BULK_HELP = {
  retry: "Retry each saga's current step now (a stuck one gets a fresh attempt budget).",
  resolve: "Mark each saga's failing compensation as done by hand, and go on compensating.",
  cancel: "Compensate each saga that has not passed its pivot.",
};

function keepPicks() {
  // Picks survive the list's live re-renders, and are dropped when the filter changes.
  if (state.pickedFor !== location.hash) {
    state.picked = new Set();
    state.pickAll = false;
    state.pickedFor = location.hash;
  }
  const all = $("#pick-all-matching");
  if (all) all.checked = state.pickAll;
}

function selectedIds() {
  return [...state.picked];
}

function onPick(event) {
  const box = event && event.target;
  if (box && box.classList.contains("pick")) {
    if (box.checked) state.picked.add(box.value); else state.picked.delete(box.value);
  }
  const count = state.pickAll ? "every saga matching the filter" : `${selectedIds().length} selected`;
  const bar = $("#bulk-bar");
  if (bar) {
    $("#bulk-count").textContent = count;
    bar.querySelectorAll("button").forEach((b) => { b.disabled = !(state.me && state.me.role === "operator") || (count === "0 selected"); });
  }
}

function bulkBar() {
  return el("div", { id: "bulk-bar", class: "bulk-bar" },
    el("span", { id: "bulk-count" }, "0 selected"),
    el("label", {}, el("input", { type: "checkbox", id: "pick-all-matching", onchange: (e) => {
      state.pickAll = e.target.checked;
      document.querySelectorAll("#saga-rows input.pick").forEach((box) => { box.checked = state.pickAll || state.picked.has(box.value); box.disabled = state.pickAll; });
      onPick();
    } }), " select all matching the filter"),
    ["retry", "resolve", "cancel"].map((a) => el("button", { "data-bulk": a, disabled: true, onclick: () => openBulk(a) }, `${a}…`)));
}

function bulkSelection() {
  if (state.pickAll) {
    const filters = filtersFromHash();
    const filter = {};
    if (filters.status) filter.status = [filters.status];
    if (filters.health) filter.health = [filters.health];
    if (filters.name) filter.name = filters.name;
    if (filters.step) filter.step = filters.step;
    if (filters.saga_id_prefix) filter.saga_id_prefix = filters.saga_id_prefix;
    const input = Object.fromEntries(Object.entries(filters).filter(([k]) => k.startsWith("input.")).map(([k, v]) => [k.slice(6), v]));
    if (Object.keys(input).length) filter.input = input;
    return { filter };
  }
  return { saga_ids: selectedIds() };
}

function openBulk(action) {
  state.bulk = { action, selection: bulkSelection() };
  $("#bulk-title").textContent = `${action} — ${$("#bulk-count").textContent}`;
  $("#bulk-help").textContent = BULK_HELP[action];
  $("#bulk-reason").value = "";
  $("#bulk-preview").replaceChildren();
  $("#bulk-error").textContent = "";
  $("#bulk-confirm").disabled = true;
  $("#bulk-dialog").showModal();
}

async function runBulk(dryRun) {
  const reason = $("#bulk-reason").value.trim();
  $("#bulk-error").textContent = "";
  if (!reason) { $("#bulk-error").textContent = "A reason is required."; return; }
  const { action, selection } = state.bulk;
  try {
    const answer = await api(`/api/bulk/${action}`, { method: "POST", body: { ...selection, reason, dry_run: dryRun } });
    showBulk(answer);
    if (dryRun) {
      $("#bulk-confirm").disabled = answer.ok === 0;
    } else {
      $("#bulk-confirm").disabled = true;
      toast(`${action}: ${answer.ok} done, ${answer.refused} refused`);
    }
  } catch (error) {
    $("#bulk-error").textContent = `${error.status || ""} ${error.message}`;
    $("#bulk-confirm").disabled = true;
  }
}

function showBulk(answer) {
  const head = answer.dry_run ? "Dry run: this would happen" : "Done";
  $("#bulk-preview").replaceChildren(
    el("strong", {}, `${head}: ${answer.ok} ok, ${answer.refused} refused`),
    el("table", { id: "bulk-outcomes" }, el("tbody", {}, answer.items.map((item) => el("tr", { "data-saga": item.saga_id, "data-outcome": item.outcome },
      el("td", { class: "mono" }, item.saga_id),
      el("td", {}, badge(item.outcome === "ok" ? "succeeded" : "rejected"), " ", item.outcome.replace("_", " ")),
      el("td", {}, item.outcome === "ok" ? (item.compensations.length ? `then undo ${item.compensations.join(", ")}` : `becomes ${item.status}`) : item.reason))))));
}

// -- tokens ---------------------------------------------------------------------------------------

function signOut() {
  state.token = "";
  state.me = null;
  localStorage.removeItem("sagaToken");
  $("#who").textContent = "signed out";
  $("#token").value = "";
  $("#token-form").hidden = false;
  $("#sign-out").hidden = true;
  $("#main").replaceChildren(el("p", { class: "muted" }, "Signed out. Paste a token to go on."));
}

function switchToken() {
  $("#token").value = "";
  $("#token-form").hidden = false;
  $("#token").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#search").value;
    $("#search").value = "";
    search(text);
  });
  $("#sign-out").addEventListener("click", signOut);
  $("#switch-token").addEventListener("click", switchToken);
  $("#bulk-cancel").addEventListener("click", async () => { $("#bulk-dialog").close(); await route(); });
  $("#bulk-dry").addEventListener("click", () => runBulk(true));
  $("#bulk-confirm").addEventListener("click", () => runBulk(false));
  setInterval(refreshCounts, 5000);
});
