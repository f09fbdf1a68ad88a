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
// An error in words: the API's human text when it has one, else the recorded code and message.
const errorText = (error) => (error ? error.text || `${error.code || "error"}: ${error.message || ""}` : "");

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

// -- one saga: saga.js draws its page (renderSaga) --------------------------------------------

const ACTION_HELP = {
  retry: "Retry the current step or compensation now (a stuck one gets a fresh attempt budget).",
  cancel: "Compensate this saga: undo its done steps in reverse order.",
  resolve: "Mark the failing compensation as done by hand (you undid it yourself), and go on compensating.",
  skip: "Mark the failing forward step as done by hand, and go on.",
  force_forward: "At or past the pivot: take the pivot as done, or retry the failing step without limit.",
};

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
