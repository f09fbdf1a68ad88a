// The saga page: the compensation story as a picture (timeline, graph, attempts, actions).
// Loaded after app.js, whose helpers (el, svg, badge, when, api, state, $) it uses.
"use strict";

// -- one colour per meaning ------------------------------------------------------------------

// Each meaning has one colour, a CSS variable in app.css (the badges use the same ones);
// every state drawn on this page maps to one meaning.
const PALETTE = {
  done: { css: "--c-done", label: "done" },
  undone: { css: "--c-undone", label: "compensated (undone)" },
  failed: { css: "--c-failed", label: "failed or refused" },
  progress: { css: "--c-progress", label: "in progress" },
  waiting: { css: "--c-waiting", label: "waiting (retry or event)" },
  stuck: { css: "--c-stuck", label: "stuck" },
  hand: { css: "--c-hand", label: "by hand" },
  idle: { css: "--c-idle", label: "not run" },
};
const MEANING = {
  succeeded: "done", completed: "done", progressing: "done",
  compensated: "undone", undone: "undone",
  failed: "failed", rejected: "failed",
  in_flight: "progress", running: "progress", accepted: "progress", compensating: "progress",
  waiting: "waiting", awaiting: "waiting", retrying: "waiting",
  stuck: "stuck", needs_attention: "stuck",
  done_by_hand: "hand",
  pending: "idle", skipped: "idle",
};
// A compensation that succeeded means its step is undone.
const meaningOf = (value, direction) =>
  (direction === "compensate" && value === "succeeded" ? "undone" : MEANING[value] || "idle");
function colour(value, direction) {
  const css = PALETTE[meaningOf(value, direction)].css;
  return getComputedStyle(document.documentElement).getPropertyValue(css).trim() || "#9aa1ad";
}

const short = (ms) => (ms ? new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "—");
const words = (value) => String(value).replace(/_/g, " ");
const humanError = (error) => (error ? error.text || error.message || error.code || "error" : "");

// A duration as a person says it (the server's views.human_duration, for the same numbers).
function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 10000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, "")} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  for (const [big, bigUnit, small, smallUnit] of [[86400, "d", 3600, "h"], [3600, "h", 60, "min"], [60, "min", 1, "s"]]) {
    if (s >= big) {
      const part = Math.floor((s % big) / small);
      return `${Math.floor(s / big)} ${bigUnit}` + (part ? ` ${part} ${smallUnit}` : "");
    }
  }
  return `${s} s`;
}

// What an entry is doing, in two short lines: its state (with how long it took), and an
// accepted step's deadline, a wait's timeout or the event it took.
function entryLines(entry) {
  const last = entry.attempts[entry.attempts.length - 1];
  if (entry.state === "accepted" && last) {
    return ["accepted", `until ${short(last.deadline_ms)}` + (last.heartbeats ? ` · ${last.heartbeats} heartbeats` : "")];
  }
  if (entry.state === "awaiting") return [`awaiting ${entry.event}`, `until ${short(last && last.deadline_ms)}`];
  if (entry.event && entry.state === "pending") return ["pending", `will wait for ${entry.event}`];
  if (entry.state === "skipped") return ["skipped", "never ran"];
  const took = entry.duration_ms !== null && entry.duration_ms !== undefined ? ` · ${duration(entry.duration_ms)}` : "";
  if (entry.event && entry.signal) return [words(entry.state) + took, `took event ${entry.signal}`];
  if (entry.direction === "compensate" && entry.state === "succeeded") return [`compensated${took}`, ""];
  return [words(entry.state) + took, ""];
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

function attemptTip(entry, a) {
  const took = a.duration_ms !== null && a.duration_ms !== undefined ? ` after ${duration(a.duration_ms)}` : " (still open)";
  return `${entry.step} (${entry.direction}) attempt ${a.attempt}: ${words(a.outcome)}${took}, sent ${when(a.sent_ms)}` +
    (a.error ? `\n${humanError(a.error)}` : "");
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
  const marker = (id, fill) => svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill }));
  const hatch = svg("pattern", { id: "undone-hatch", width: 8, height: 8, patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)" }, svg("rect", { width: 8, height: 8, fill: "#fff" }),
  svg("line", { x1: 0, y1: 0, x2: 0, y2: 8, stroke: colour("compensated"), "stroke-width": 3, "stroke-opacity": 0.22 }));
  return svg("defs", {}, marker("arrow", "#7a8290"), marker("arrow-undone", colour("compensated")), hatch);
}

function edge(x1, y1, x2, y2, dashed = false) {
  const mid = (x1 + x2) / 2;
  return svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, fill: "none", stroke: "#7a8290",
    "stroke-width": 1.5, "marker-end": "url(#arrow)", "stroke-dasharray": dashed ? "4 3" : "none", class: "edge" });
}

// The pivot: a diamond on the box's top-right corner (the point of no return).
function pivotMarker(x, y, passed) {
  const d = 8;
  const g = svg("g", { class: "pivot-marker" },
    svg("polygon", { points: `${x},${y - d} ${x + d},${y} ${x},${y + d} ${x - d},${y}`, fill: passed ? "#1d2330" : "#fff",
      stroke: "#1d2330", "stroke-width": 2 }));
  g.append(svg("title", {}, passed ? "pivot: passed, the saga can only move forward" : "pivot: the point of no return (not passed)"));
  return g;
}

// A text that must fit `width` pixels: cut with an ellipsis after layout (fitLabels), with
// the whole text in data-full and as its tooltip.
const fitted = (width, attrs, text) => svg("text", { ...attrs, "data-fit": width }, text);

function fitLabels(root) {
  for (const node of root.querySelectorAll("text[data-fit]")) {
    const width = +node.dataset.fit;
    const full = node.textContent;
    if (node.getComputedTextLength() <= width) continue;
    let cut = full.length;
    while (cut > 1 && node.getComputedTextLength() > width) node.textContent = `${full.slice(0, --cut)}…`;
    // The whole text as a tooltip, beside the text (so the text itself stays what is drawn).
    node.dataset.full = full;
    const tip = svg("g", { class: "fit" }, svg("title", {}, full));
    node.replaceWith(tip);
    tip.append(node);
  }
  // A strike through an undone step's name is as long as the name as drawn.
  for (const line of root.querySelectorAll("line.strike")) {
    const name = line.closest("g.step").querySelector("text.name");
    line.setAttribute("x2", +name.getAttribute("x") + name.getComputedTextLength() + 2);
  }
}

// The attempts under a box: a chip each (outcome colour, number, how long it took), in rows
// of two; past CHIPS, the first and last ones with "+n more" between.
const CHIPS = 8, CHIP_W = 82, CHIP_H = 16;
function chipsOf(entry) {
  const all = entry.attempts;
  if (all.length <= 1) return [];
  if (all.length <= CHIPS) return all;
  return [...all.slice(0, 3), { more: all.length - 7, hidden: all.slice(3, -4) }, ...all.slice(-4)];
}
const chipRows = (entry) => Math.ceil(chipsOf(entry).length / 2);

function attemptChips(entry, x0, y0, direction) {
  const g = svg("g", { class: "attempts" });
  chipsOf(entry).forEach((a, k) => {
    const cx = x0 + (k % 2) * CHIP_W, cy = y0 + Math.floor(k / 2) * CHIP_H;
    if (a.more) {
      const more = fitted(CHIP_W - 6, { x: cx + 2, y: cy + 11, "font-size": 10.5, fill: "#6b7280", class: "label more" }, `+${a.more} more`);
      g.append(svg("g", { class: "hidden-attempts" }, svg("title", {}, a.hidden.map((h) => attemptTip(entry, h)).join("\n")), more));
      return;
    }
    const chip = svg("g", { class: `attempt ${a.outcome}`, "data-attempt": a.attempt });
    chip.append(svg("title", {}, attemptTip(entry, a)));
    chip.append(svg("circle", { cx: cx + 5, cy: cy + 7, r: 4.5, fill: colour(a.outcome, direction) }));
    const took = a.duration_ms !== null && a.duration_ms !== undefined ? duration(a.duration_ms) : "…";
    chip.append(fitted(CHIP_W - 20, { x: cx + 13, y: cy + 11, "font-size": 10.5, fill: "#4b5563", class: "label" }, `#${a.attempt} ${took}`));
    g.append(chip);
  });
  return g;
}

// Steps the saga never ran (it compensated or finished first), drawn as skipped.
function withSkipped(timeline, definition) {
  const skipped = (timeline.story && timeline.story.skipped) || [];
  if (!skipped.length || !definition) return timeline.steps;
  const byName = new Map(definition.steps.map((s) => [s.name, s]));
  return [...timeline.steps, ...skipped.filter((n) => byName.has(n)).map((name) => {
    const s = byName.get(name);
    return { step: name, direction: "forward", state: "skipped", kind: s.kind, service: s.service, command: s.command,
      event: s.event, attempts: [], after: s.after, lane: null, by_hand: null, duration_ms: null };
  })];
}

function drawTimeline(saga) {
  const timeline = saga.timeline;
  const story = timeline.story || {};
  const steps = withSkipped(timeline, saga.definition);
  const comps = timeline.compensations;
  const undone = new Set(story.undone || []);
  const boxW = 170, boxH = 52, gapX = 40, gapY = 22, left = 112, top = 16;
  const linked = steps.some((s) => s.after && s.after.length);
  const column = depths(steps, !linked);
  const rowOf = placeRows(steps, (e) => column.get(e.step));
  const forwardRows = Math.max(1, ...[...rowOf.values()].map((r) => r + 1));
  const strip = Math.max(0, ...[...steps, ...comps].map(chipRows)) * CHIP_H;
  const rowH = boxH + strip + gapY + 8;
  const compTop = top + forwardRows * rowH + 30;
  // A compensation sits under its step's column; one for a step not run stays at the left.
  const compColumn = (e) => (column.has(e.step) ? column.get(e.step) : 0);
  const compRow = placeRows(comps, compColumn);
  const compRows = comps.length ? Math.max(1, ...[...compRow.values()].map((r) => r + 1)) : 0;
  const columns = Math.max(1, ...[...column.values()].map((c) => c + 1));
  const width = left + columns * (boxW + gapX) + 20;
  const height = (comps.length ? compTop + compRows * rowH : top + forwardRows * rowH) + 10;
  const x = (c) => left + c * (boxW + gapX);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", id: "timeline",
    "aria-label": "saga timeline: steps forward, branches side by side, compensations back" });
  root.append(arrowDefs());
  root.append(svg("text", { x: 8, y: top + 30, "font-size": 12, fill: "#6b7280", class: "label" }, "forward →"));
  if (comps.length) root.append(svg("text", { x: 8, y: compTop + 30, "font-size": 12, fill: "#6b7280", class: "label" }, "← compensate"));

  const box = (entry, cx, y, lane) => {
    const isUndone = lane === "forward" && undone.has(entry.step);
    const skipped = entry.state === "skipped";
    const color = colour(entry.state, entry.direction);
    const g = svg("g", { class: `step ${lane}${isUndone ? " undone" : ""}${skipped ? " skipped" : ""}` +
        (story.because && story.because.step === entry.step && lane === "forward" ? " cause" : ""),
      "data-step": entry.step, "data-state": entry.state, "data-lane": entry.lane ?? "", "data-column": cx,
      "data-undone": isUndone ? "true" : null });
    g.append(svg("title", {}, entryTip(entry) + (isUndone ? "\nundone by its compensation" : "")));
    const faint = entry.state === "pending" || skipped;
    g.append(svg("rect", { x: x(cx), y, width: boxW, height: boxH, rx: 7,
      fill: isUndone ? "url(#undone-hatch)" : (faint ? "#f3f4f6" : "#fff"),
      stroke: isUndone ? colour("compensated") : color, "stroke-width": 2.5, "stroke-dasharray": faint ? "5 4" : "none" }));
    const [label, detail] = entryLines(entry);
    const isPivot = entry.kind === "pivot";
    const name = fitted(boxW - (isPivot ? 34 : 20), { x: x(cx) + 10, y: y + 17, "font-size": 13, "font-weight": 600,
      fill: faint ? "#6b7280" : "#1d2330", class: "label name" }, entry.step);
    g.append(name);
    if (isUndone) {
      // Struck through: the step ran, and its compensation undid it.
      g.append(svg("line", { x1: x(cx) + 8, y1: y + 12, x2: x(cx) + boxW - 12, y2: y + 12, stroke: "#1d2330",
        "stroke-width": 1.5, class: "strike" }));
    }
    g.append(fitted(boxW - 20, { x: x(cx) + 10, y: y + 32, "font-size": 11, fill: skipped ? "#6b7280" : color, class: "label state" }, label));
    const undoneText = isUndone ? "undone by its compensation" : "";
    const line3 = detail || undoneText;
    if (line3) g.append(fitted(boxW - 20, { x: x(cx) + 10, y: y + 46, "font-size": 10.5, fill: "#4b5563", class: "label detail" }, line3));
    if (isPivot) g.append(pivotMarker(x(cx) + boxW - 14, y + 13, story.pivot_passed));
    g.append(attemptChips(entry, x(cx) + 4, y + boxH + 4, entry.direction));
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
      root.append(edge(x(column.get(from.step)) + boxW, fy(from) + boxH / 2, x(c) - 3, fy(entry) + boxH / 2, entry.state === "skipped"));
    }
  });
  const compByName = new Map(comps.map((e) => [e.step, e]));
  // The arrows back: each undone step down to the compensation that undid it (under the boxes).
  for (const name of undone) {
    const from = forwardByName.get(name), to = compByName.get(name);
    if (!from || !to) continue;
    // Down the left side of the boxes, where no label is: from the step into its compensation.
    const fx = x(column.get(name)), tx = x(compColumn(to)), y1 = fy(from) + boxH - 8, y2 = cy(to) + 12;
    root.append(svg("path", { d: `M${fx},${y1} C${fx - 24},${y1} ${tx - 24},${y2} ${tx - 3},${y2}`,
      fill: "none", stroke: colour("compensated"), "stroke-width": 1.5, "stroke-dasharray": "5 3",
      "marker-end": "url(#arrow-undone)", class: "undo-arrow", "data-step": name }));
  }
  steps.forEach((entry) => root.append(box(entry, column.get(entry.step), fy(entry), "forward")));
  comps.forEach((entry, i) => {
    const c = compColumn(entry);
    let sources = (entry.after || []).filter((n) => compByName.has(n)).map((n) => compByName.get(n));
    if (!linked && i > 0) sources = [comps[i - 1]];
    for (const from of sources) {
      root.append(edge(x(compColumn(from)), cy(from) + boxH / 2, x(c) + boxW + 3, cy(entry) + boxH / 2));
    }
  });
  comps.forEach((entry) => root.append(box(entry, compColumn(entry), cy(entry), "compensation")));
  return el("div", { class: "timeline" }, root);
}

function legend() {
  const items = Object.values(PALETTE).map((p) => {
    const dot = el("i", { class: "swatch" });
    dot.style.background = `var(${p.css})`;
    return el("span", {}, dot, p.label);
  });
  const pivot = el("span", { class: "legend-pivot" }, el("i", { class: "diamond" }), "pivot (point of no return)");
  const undone = el("span", { class: "legend-undone" }, el("i", { class: "hatch" }), el("s", {}, "step"), " undone by its compensation");
  const skipped = el("span", { class: "legend-skipped" }, el("i", { class: "dashed" }), "skipped (never ran)");
  return el("div", { class: "legend", id: "legend" }, items, pivot, undone, skipped);
}

// -- the definition as a graph, with the saga's progress on it ---------------------------------

// One state per step of the definition: its compensation's when it has one, else its own.
function progressOf(definition, timeline) {
  const forward = new Map(timeline.steps.map((e) => [e.step, e]));
  const back = new Map(timeline.compensations.map((e) => [e.step, e]));
  const skipped = new Set((timeline.story && timeline.story.skipped) || []);
  const found = new Map();
  for (const step of definition.steps) {
    const entry = forward.get(step.name);
    const comp = back.get(step.name);
    let status = entry ? entry.state : (skipped.has(step.name) ? "skipped" : "pending");
    let detail = entry ? entryLines(entry)[1] : (status === "skipped" ? "never ran" : "");
    if (entry && !detail && entry.duration_ms !== null && entry.duration_ms !== undefined) detail = `took ${duration(entry.duration_ms)}`;
    if (comp && comp.state !== "pending") {
      const undone = comp.state === "succeeded" || comp.state === "done_by_hand";
      status = undone ? "compensated"
        : (["failed", "stuck", "rejected"].includes(comp.state) ? comp.state : "compensating");
      const by = step.service ? ` by ${step.service}.${step.compensation}` : "";
      detail = comp.state === "done_by_hand" ? "undone by hand" : (undone ? `undone${by}` : `compensation ${words(comp.state)}`);
    } else if (comp) {
      detail = "to compensate";
    }
    found.set(step.name, { status, detail, entry, comp });
  }
  return found;
}

function drawGraph(definition, timeline) {
  const boxW = 180, boxH = 70, gapX = 44, gapY = 18, pad = 12;
  const story = timeline.story || {};
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
    const color = colour(status);
    const faint = status === "pending" || status === "skipped";
    const isUndone = status === "compensated";
    const g = svg("g", { class: `node ${step.kind}${isUndone ? " undone" : ""}`, "data-step": step.name, "data-state": status });
    const kind = step.kind === "wait" ? `wait for ${step.event}` : `${step.service}.${step.command}` +
      (step.long_running ? " · long" : "") + (step.kind === "compensatable" ? "" : ` · ${step.kind}`);
    g.append(svg("title", {}, [`${step.name}: ${words(status)}`, kind, detail,
      step.after.length ? `after ${step.after.join(", ")}` : "starts with the saga"].filter(Boolean).join("\n")));
    g.append(svg("rect", { x: x(step.name), y: y(step.name), width: boxW, height: boxH, rx: step.kind === "wait" ? 18 : 7,
      fill: isUndone ? "url(#undone-hatch)" : (faint ? "#f3f4f6" : "#fff"), stroke: color,
      "stroke-width": step.kind === "pivot" ? 4 : 2.5, "stroke-dasharray": faint ? "5 4" : "none" }));
    g.append(fitted(boxW - (step.kind === "pivot" ? 34 : 20), { x: x(step.name) + 10, y: y(step.name) + 17, "font-size": 13,
      "font-weight": 600, fill: faint ? "#6b7280" : "#1d2330", class: "label name" }, step.name));
    g.append(fitted(boxW - 20, { x: x(step.name) + 10, y: y(step.name) + 31, "font-size": 10.5, fill: "#6b7280", class: "label" }, kind));
    g.append(fitted(boxW - 20, { x: x(step.name) + 10, y: y(step.name) + 47, "font-size": 11, fill: faint ? "#6b7280" : color, class: "label status" }, words(status)));
    if (detail) g.append(fitted(boxW - 20, { x: x(step.name) + 10, y: y(step.name) + 61, "font-size": 10.5, fill: "#4b5563", class: "label detail" }, detail));
    if (step.kind === "pivot") g.append(pivotMarker(x(step.name) + boxW - 14, y(step.name) + 13, story.pivot_passed));
    root.append(g);
  }
  return el("div", { class: "graph" }, root);
}

// -- tables --------------------------------------------------------------------------------------

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
      const open = a.duration_ms === null || a.duration_ms === undefined;
      rows.push(el("tr", { "data-step": entry.step, "data-direction": entry.direction },
        el("td", {}, entry.step), el("td", {}, entry.direction), el("td", {}, a.attempt),
        el("td", {}, badge(a.outcome)), el("td", {}, when(a.sent_ms)),
        el("td", { class: "took" }, open ? el("span", { class: "muted" }, `open for ${duration(Math.max(0, Date.now() - a.sent_ms))}`) : duration(a.duration_ms)),
        el("td", { class: "error" }, humanError(a.error)),
        el("td", {}, a.retry_at_ms ? when(a.retry_at_ms) : ""),
        el("td", {}, a.deadline_ms ? (a.outcome === "awaiting" ? `${entry.event} by ` : "") + when(a.deadline_ms) : "")));
    }
  }
  return el("table", { id: "attempts" },
    el("thead", {}, el("tr", {}, ["Step", "Direction", "Attempt", "Outcome", "Sent", "Took", "Error", "Retry at", "Deadline"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function healthText(h) {
  const parts = [];
  if (h.step) parts.push(`${h.step} (${h.direction}), attempt ${h.attempt}`);
  if (h.retry_at_ms) parts.push(`next try ${when(h.retry_at_ms)}`);
  if (h.reason) parts.push(h.reason);
  else if (h.last_error) parts.push(humanError(h.last_error));
  return parts.join(" · ");
}

// -- the page ------------------------------------------------------------------------------------

async function renderSaga(sagaId) {
  const saga = await api(`/api/sagas/${encodeURIComponent(sagaId)}`);
  state.saga = saga;
  const health = saga.health;
  const story = saga.timeline.story || {};
  const canAct = state.me && state.me.role === "operator";
  const buttons = Object.entries(saga.actions).map(([action, fit]) =>
    el("button", { "data-action": action, disabled: !fit.allowed || !canAct,
      title: fit.allowed ? (canAct ? ACTION_HELP[action] : "needs the operator role") : fit.reason,
      onclick: () => openAction(saga.saga_id, action) }, action.replace("_", " ")));
  const facts = [["Definition", `${saga.name} v${saga.version}`], ["Status", badge(saga.status)],
    ["Health", health ? el("span", {}, badge(health.state), " ", healthText(health)) : "finished"],
    ["Owner", saga.owner ? el("span", {}, el("span", { class: "mono" }, saga.owner), ` (epoch ${saga.epoch})`) : "none"],
    ["Created", when(saga.created_ms)], ["Updated", when(saga.updated_ms)]];
  if (saga.created_ms && saga.updated_ms && ["completed", "compensated"].includes(saga.status)) {
    facts.push(["Took", duration(saga.updated_ms - saga.created_ms)]);
  }
  if (story.pivot) facts.push(["Pivot", `${story.pivot} (${story.pivot_passed ? "passed: it only moves forward now" : "not passed"})`]);
  const audit = saga.timeline.operator_actions.map((a) => el("tr", {},
    el("td", {}, when(a.at_ms)), el("td", {}, a.action), el("td", {}, a.actor),
    el("td", {}, a.step ? `${a.step} (${a.direction})` : "—"), el("td", {}, a.reason)));
  const tense = story.tense || "present";
  $("#main").replaceChildren(
    el("h2", {}, "Saga ", el("span", { class: "mono" }, saga.saga_id)),
    el("div", { class: "card" },
      story.sentence ? el("p", { id: "story", class: `story ${tense} ${meaningOf(saga.status)}` }, story.sentence) : "",
      el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      el("div", { class: "actions" }, buttons)),
    saga.definition ? el("div", { class: "card" }, el("h3", {}, "Graph"), drawGraph(saga.definition, saga.timeline)) : "",
    el("div", { class: "card" }, el("h3", {}, "Timeline"), drawTimeline(saga), legend()),
    el("h3", {}, "In progress"), activeTable(saga.active || []),
    (saga.signals || []).length ? el("div", {}, el("h3", {}, "Outside events"), signalsTable(saga.signals)) : "",
    el("h3", {}, "Attempts"), attemptsTable(saga.timeline),
    el("h3", {}, "Operator actions"),
    el("table", { id: "audit" },
      el("thead", {}, el("tr", {}, ["When", "Action", "Who", "Step", "Why"].map((h) => el("th", {}, h)))),
      el("tbody", {}, audit.length ? audit : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "None.")))),
    el("h3", {}, "Input"), el("pre", {}, JSON.stringify(saga.input, null, 2)),
    el("h3", {}, "Results"), el("pre", {}, JSON.stringify(saga.results, null, 2)));
  document.querySelectorAll("#main svg").forEach(fitLabels);
}
