// podlog search page: plain JS, no build step, no third-party code.
// All record text reaches the DOM through textContent or text nodes, never as HTML.
"use strict";

const FACETS = ["namespace", "pod", "container", "level", "stream", "node", "workload"];
const RANGES = { "15m": "now-15m", "1h": "now-1h", "24h": "now-24h", "7d": "now-7d" };
const PAGE_SIZE = 200;
const MAX_ROWS = 2000;
const CONTEXT_LINES = 30;

const $ = (id) => document.getElementById(id);
const state = { q: "", range: "15m", start: "", end: "", filters: {}, live: false, ctx: "" };
let cursor = null;
let rows = [];            // records shown, newest first
let selected = -1;
let tailAbort = null;
let searchSeq = 0;
let histogramRange = null;  // {start, end, interval} in ms, for drag-to-zoom

// ---------- URL state ----------

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.q = p.get("q") || "";
  state.start = p.get("start") || "";
  state.end = p.get("end") || "";
  state.range = state.start ? "custom" : (p.get("range") in RANGES ? p.get("range") : "15m");
  state.filters = {};
  for (const f of FACETS) {
    const values = p.getAll(f).filter(Boolean);
    if (values.length) state.filters[f] = values;
  }
  state.live = p.get("live") === "1";
  state.ctx = p.get("ctx") || "";
}

function writeUrl(push) {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.range === "custom") { p.set("start", state.start); p.set("end", state.end); }
  else p.set("range", state.range);
  for (const [f, values] of Object.entries(state.filters)) for (const v of values) p.append(f, v);
  if (state.live) p.set("live", "1");
  if (state.ctx) p.set("ctx", state.ctx);
  const url = location.pathname + "?" + p.toString();
  if (url !== location.pathname + location.search) {
    (push ? history.pushState : history.replaceState).call(history, null, "", url);
  }
}

function apiParams(extra) {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.range === "custom") {
    p.set("start", state.start);
    p.set("end", state.end);
  } else {
    p.set("start", RANGES[state.range]);
    p.set("end", "now");
  }
  for (const [f, values] of Object.entries(state.filters)) for (const v of values) p.append(f, v);
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p;
}

// ---------- API with authentication ----------

function authHeaders() {
  const value = sessionStorage.getItem("podlog.auth");
  return value ? { Authorization: value } : {};
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : "HTTP " + status);
    this.status = status;
    this.position = body ? body.position : undefined;
  }
}

async function api(path, params, options) {
  const url = params ? path + "?" + params.toString() : path;
  const response = await fetch(url, { headers: authHeaders(), ...(options || {}) });
  if (response.status === 401) {
    await login(response.headers.get("www-authenticate") || "");
    return api(path, params, options);
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, body);
  }
  return response;
}

function login(challenge) {
  const dialog = $("login");
  const basic = challenge.toLowerCase().startsWith("basic");
  $("login-token-row").hidden = basic;
  $("login-user-row").hidden = !basic;
  $("login-password-row").hidden = !basic;
  if (sessionStorage.getItem("podlog.auth")) $("login-error").textContent = "Those credentials were refused.";
  return new Promise((resolve) => {
    $("login-form").onsubmit = () => {
      const header = basic
        ? "Basic " + btoa(unescape(encodeURIComponent($("login-user").value + ":" + $("login-password").value)))
        : "Bearer " + $("login-token").value.trim();
      sessionStorage.setItem("podlog.auth", header);
      resolve();
    };
    if (!dialog.open) dialog.showModal();
  });
}

// ---------- rendering ----------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function get(record, path) {
  let node = record;
  for (const part of path.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = node[part];
  }
  return node;
}

function shortTime(record) {
  const ts = String(record["@timestamp"] || "");
  return ts.replace("T", " ").replace("Z", "").slice(0, 26);
}

function highlightTerms(q) {
  const terms = [];
  const re = /(^|[\s(])([-!+]?)(?:([\w.@]+):)?("(?:[^"\\]|\\.)*"|[^\s()":]+)/g;
  let m;
  while ((m = re.exec(q)) !== null) {
    const [, , sign, field, raw] = m;
    if (sign === "-" || sign === "!") continue;
    if (["AND", "OR", "NOT", "TO"].includes(raw)) continue;
    if (field && !["message", "msg"].includes(field)) continue;
    const text = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw.replace(/[*?]/g, "");
    if (text.length >= 2) terms.push(text.toLowerCase());
  }
  return terms;
}

function appendHighlighted(parent, text, terms) {
  if (!terms.length) { parent.textContent = text; return; }
  const lower = text.toLowerCase();
  let i = 0;
  while (i < text.length) {
    let best = -1, bestLen = 0;
    for (const t of terms) {
      const at = lower.indexOf(t, i);
      if (at !== -1 && (best === -1 || at < best || (at === best && t.length > bestLen))) { best = at; bestLen = t.length; }
    }
    if (best === -1) { parent.append(document.createTextNode(text.slice(i))); break; }
    if (best > i) parent.append(document.createTextNode(text.slice(i, best)));
    parent.append(el("mark", "", text.slice(best, best + bestLen)));
    i = best + bestLen;
  }
}

function renderRow(record, terms, options) {
  const li = el("li", "row " + (record.stream === "stderr" ? "stderr" : "stdout"));
  li.tabIndex = 0;
  li.dataset.id = get(record, "event.id") || "";
  li.append(el("span", "ts", shortTime(record)));
  if (!options.context) {
    const src = [get(record, "kubernetes.namespace"), get(record, "kubernetes.pod.name"),
      get(record, "kubernetes.container.name")].filter(Boolean).join("/");
    const srcEl = el("span", "src", src);
    srcEl.title = src;
    li.append(srcEl);
  }
  const level = record.level || "";
  li.append(el("span", "lvl lvl-" + String(level).toLowerCase().replace(/[^a-z]/g, ""), level));
  const msg = el("span", "msg");
  appendHighlighted(msg, String(record.message ?? ""), terms);
  li.append(msg);
  if (options.fresh) li.classList.add("fresh");
  if (options.anchor) li.classList.add("anchor");
  if (!options.context) {
    li.addEventListener("click", (event) => {
      if (event.target.closest(".detail")) return;
      select(rows.indexOf(record));
      toggleDetail(li, record);
    });
  }
  return li;
}

function toggleDetail(li, record) {
  const open = li.querySelector(".detail");
  if (open) { open.remove(); return; }
  const detail = el("div", "detail");
  const actions = el("div", "actions");
  const ctx = el("button", "", "Context");
  ctx.type = "button";
  ctx.addEventListener("click", () => openContext(get(record, "event.id")));
  actions.append(ctx);
  const pre = el("pre", "", JSON.stringify(record, null, 2));
  detail.append(actions, pre);
  li.append(detail);
}

function renderResults(records, append) {
  const list = $("results");
  const terms = highlightTerms(state.q);
  const fragment = document.createDocumentFragment();
  for (const r of records) fragment.append(renderRow(r, terms, {}));
  if (!append) { list.replaceChildren(); rows = []; selected = -1; }
  list.append(fragment);
  rows = rows.concat(records);
}

function prependLive(records) {
  const list = $("results");
  const terms = highlightTerms(state.q);
  const newestFirst = records.slice().reverse();
  const fragment = document.createDocumentFragment();
  for (const r of newestFirst) fragment.append(renderRow(r, terms, { fresh: true }));
  list.prepend(fragment);
  rows = newestFirst.concat(rows);
  if (selected >= 0) selected += newestFirst.length;
  while (rows.length > MAX_ROWS) { rows.pop(); list.lastElementChild.remove(); }
  $("status").textContent = "Live: " + records.length + " new line(s) at " + new Date().toLocaleTimeString();
}

function select(index) {
  const items = $("results").children;
  if (!items.length) return;
  index = Math.max(0, Math.min(items.length - 1, index));
  if (selected >= 0 && items[selected]) items[selected].classList.remove("selected");
  selected = index;
  items[index].classList.add("selected");
  items[index].focus();
}

function renderHistogram(data) {
  const svg = $("histogram");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const startMs = data.start_ns / 1e6, endMs = data.end_ns / 1e6, intervalMs = data.interval_ns / 1e6;
  histogramRange = { start: startMs, end: endMs, interval: intervalMs };
  const width = 1000, height = 80;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...data.buckets.map((b) => b.count));
  const span = Math.max(1, endMs - startMs);
  for (const b of data.buckets) {
    const x = ((b.start_ns / 1e6 - startMs) / span) * width;
    const w = Math.max(1, (intervalMs / span) * width - 1);
    const h = (b.count / max) * (height - 4);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("class", "b");
    rect.setAttribute("x", String(Math.max(0, x)));
    rect.setAttribute("y", String(height - h));
    rect.setAttribute("width", String(w));
    rect.setAttribute("height", String(h));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${new Date(b.start_ns / 1e6).toISOString()}: ${b.count}`;
    rect.append(title);
    svg.append(rect);
  }
  $("range-label").textContent =
    `${new Date(startMs).toISOString()} to ${new Date(endMs).toISOString()}, ` +
    `${formatInterval(intervalMs)} per bar`;
}

function formatInterval(ms) {
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return ms / 1000 + " s";
  if (ms < 3600000) return ms / 60000 + " min";
  if (ms < 86400000) return ms / 3600000 + " h";
  return ms / 86400000 + " d";
}

function setupHistogramZoom() {
  const svg = $("histogram");
  let from = null;
  let band = null;
  const toMs = (clientX) => {
    const box = svg.getBoundingClientRect();
    const frac = Math.min(1, Math.max(0, (clientX - box.left) / box.width));
    return histogramRange.start + frac * (histogramRange.end - histogramRange.start);
  };
  svg.addEventListener("mousedown", (e) => {
    if (!histogramRange) return;
    from = e.clientX;
    band = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    band.setAttribute("class", "sel");
    band.setAttribute("y", "0");
    band.setAttribute("height", "80");
    svg.append(band);
    e.preventDefault();
  });
  window.addEventListener("mousemove", (e) => {
    if (from === null) return;
    const box = svg.getBoundingClientRect();
    const a = ((Math.min(from, e.clientX) - box.left) / box.width) * 1000;
    const b = ((Math.max(from, e.clientX) - box.left) / box.width) * 1000;
    band.setAttribute("x", String(Math.max(0, a)));
    band.setAttribute("width", String(Math.max(0, b - a)));
  });
  window.addEventListener("mouseup", (e) => {
    if (from === null) return;
    const a = toMs(Math.min(from, e.clientX)), b = toMs(Math.max(from, e.clientX));
    from = null;
    if (b - a < 1) { band.remove(); return; }
    state.range = "custom";
    state.start = new Date(Math.floor(a)).toISOString();
    state.end = new Date(Math.ceil(b)).toISOString();
    syncForm();
    run(true);
  });
}

function renderFacets(results) {
  const root = $("facets");
  root.replaceChildren();
  for (const [field, values] of results) {
    const section = el("section");
    section.append(el("h3", "", field));
    const list = el("ul");
    const active = state.filters[field] || [];
    for (const { value, count } of values) {
      const item = el("li");
      const button = el("button", "facet");
      button.type = "button";
      button.setAttribute("aria-pressed", String(active.includes(value)));
      button.append(el("span", "", value), el("span", "count", count));
      button.addEventListener("click", () => toggleFilter(field, value));
      item.append(button);
      list.append(item);
    }
    section.append(list);
    root.append(section);
  }
  const chips = $("active-filters");
  chips.replaceChildren();
  for (const [field, values] of Object.entries(state.filters)) {
    for (const value of values) {
      const chip = el("button", "chip", `${field}: ${value} ✕`);
      chip.type = "button";
      chip.title = "Remove filter";
      chip.addEventListener("click", () => toggleFilter(field, value));
      chips.append(chip);
    }
  }
}

function toggleFilter(field, value) {
  const values = state.filters[field] || [];
  const next = values.includes(value) ? values.filter((v) => v !== value) : values.concat([value]);
  if (next.length) state.filters[field] = next; else delete state.filters[field];
  run(true);
}

function showError(error) {
  const box = $("query-error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  let text = error.message;
  if (error.position !== undefined && state.q) {
    text += "\n" + state.q + "\n" + " ".repeat(error.position) + "^";
  }
  box.textContent = text;
  box.hidden = false;
}

// ---------- actions ----------

async function run(push) {
  readForm();
  writeUrl(push);
  const seq = ++searchSeq;
  cursor = null;
  showError(null);
  $("status").textContent = "Searching…";
  try {
    const [page, histogram, ...facets] = await Promise.all([
      api("/api/search", apiParams({ size: PAGE_SIZE })).then((r) => r.json()),
      api("/api/histogram", apiParams()).then((r) => r.json()),
      ...FACETS.map((f) => api("/api/top", apiParams({ field: f, size: 8 })).then((r) => r.json())),
    ]);
    if (seq !== searchSeq) return;
    renderResults(page.hits, false);
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
    $("total").textContent = `${page.total}${page.total_exact ? "" : "+"} matches`;
    renderHistogram(histogram);
    renderFacets(facets.filter((f) => f.values.length).map((f) => [f.field, f.values]));
    $("status").textContent = page.hits.length ? "" : "No matches in this time range.";
    $("export").href = "/api/export?" + apiParams().toString();
  } catch (error) {
    if (seq !== searchSeq) return;
    showError(error);
    $("status").textContent = "";
  }
  restartTail();
  if (state.ctx) openContext(state.ctx, true);
}

async function loadMore() {
  if (!cursor) return;
  try {
    const page = await api("/api/search", apiParams({ size: PAGE_SIZE, cursor })).then((r) => r.json());
    renderResults(page.hits, true);
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
  } catch (error) {
    showError(error);
  }
}

async function openContext(eventId, fromUrl) {
  if (!eventId) return;
  state.ctx = eventId;
  if (!fromUrl) writeUrl(true);
  const panel = $("context");
  const list = $("context-lines");
  panel.hidden = false;
  list.replaceChildren(el("li", "status", "Loading…"));
  try {
    const params = new URLSearchParams({ before: CONTEXT_LINES, after: CONTEXT_LINES });
    const data = await api("/api/context/" + encodeURIComponent(eventId), params).then((r) => r.json());
    const terms = highlightTerms(state.q);
    list.replaceChildren();
    for (const r of data.before) list.append(renderRow(r, terms, { context: true }));
    const anchor = renderRow(data.anchor, terms, { context: true, anchor: true });
    list.append(anchor);
    for (const r of data.after) list.append(renderRow(r, terms, { context: true }));
    anchor.scrollIntoView({ block: "center" });
    anchor.focus();
  } catch (error) {
    list.replaceChildren(el("li", "error", error.message));
  }
}

function closeContext() {
  $("context").hidden = true;
  state.ctx = "";
  writeUrl(false);
  if (selected >= 0) select(selected);
}

function restartTail() {
  if (tailAbort) { tailAbort.abort(); tailAbort = null; }
  $("live").setAttribute("aria-pressed", String(state.live));
  if (!state.live) return;
  const controller = new AbortController();
  tailAbort = controller;
  const params = apiParams();
  params.delete("start");
  params.delete("end");
  streamTail(params, controller).catch((error) => {
    if (controller.signal.aborted) return;
    $("status").textContent = "Live tail stopped: " + error.message;
  });
}

async function streamTail(params, controller) {
  const response = await api("/api/tail", params, { signal: controller.signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let ended = "";
  $("status").textContent = "Live tail on: new lines appear at the top.";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (event === "records") prependLive(JSON.parse(data).records);
      else if (event === "error") {
        const body = JSON.parse(data);
        ended = body.reason || "error";
        $("status").textContent = "Live tail: " + body.error;
      }
    }
  }
  if (controller.signal.aborted) return;
  // The server ends tails at a maximum duration and when idle: a visible page carries on
  // seamlessly; a hidden tab waits until it is looked at again, so no one tails for nobody.
  if ((ended === "max_duration" || ended === "idle") && state.live) {
    if (document.visibilityState === "visible") { restartTail(); return; }
    $("status").textContent = "Live tail paused while this tab is hidden.";
    document.addEventListener("visibilitychange", function resume() {
      if (document.visibilityState !== "visible") return;
      document.removeEventListener("visibilitychange", resume);
      if (state.live && tailAbort === controller) restartTail();
    });
    return;
  }
  if (!ended) $("status").textContent = "Live tail ended by the server.";
  if (ended === "revoked") {
    state.live = false;
    $("live").setAttribute("aria-pressed", "false");
    writeUrl(false);
  }
}

async function exportResults(event) {
  event.preventDefault();
  try {
    const response = await api("/api/export", apiParams());
    const blob = await response.blob();
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = "podlog-export.ndjson";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    showError(error);
  }
}

// ---------- form and keys ----------

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function syncForm() {
  $("q").value = state.q;
  $("range").value = state.range;
  $("custom-range").hidden = state.range !== "custom";
  $("start").value = toLocalInput(state.start);
  $("end").value = toLocalInput(state.end);
  $("live").setAttribute("aria-pressed", String(state.live));
}

function readForm() {
  state.q = $("q").value.trim();
  state.range = $("range").value;
  if (state.range === "custom") {
    const now = Date.now();
    const start = $("start").value ? new Date($("start").value) : new Date(now - 3600000);
    const end = $("end").value ? new Date($("end").value) : new Date(now);
    state.start = start.toISOString();
    state.end = end.toISOString();
  } else {
    state.start = "";
    state.end = "";
  }
}

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function setupKeys() {
  document.addEventListener("keydown", (e) => {
    const typing = e.target.matches("input, select, textarea");
    if (e.key === "Escape") {
      if (!$("context").hidden) { closeContext(); e.preventDefault(); }
      else if (typing) e.target.blur();
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    const items = $("results").children;
    if (e.key === "/") { $("q").focus(); $("q").select(); e.preventDefault(); }
    else if (e.key === "j") { select(selected + 1); e.preventDefault(); }
    else if (e.key === "k") { select(selected - 1); e.preventDefault(); }
    else if (e.key === "Enter" && selected >= 0 && e.target.classList.contains("row")) {
      toggleDetail(items[selected], rows[selected]); e.preventDefault();
    } else if (e.key === "c" && selected >= 0) { openContext(get(rows[selected], "event.id")); }
    else if (e.key === "l") { $("live").click(); }
    else if (e.key === "?") { $("help-button").click(); }
  });
}

async function whoami() {
  try {
    const me = await api("/api/whoami").then((r) => r.json());
    $("who").textContent = me.auth === "none" ? "" : `${me.name} (${me.namespaces.join(", ")})`;
  } catch (_) { /* shown by the search */ }
}

function init() {
  applyTheme(localStorage.getItem("podlog.theme"));
  readUrl();
  syncForm();
  $("query-form").addEventListener("submit", (e) => { e.preventDefault(); run(true); });
  $("range").addEventListener("change", () => {
    $("custom-range").hidden = $("range").value !== "custom";
    if ($("range").value !== "custom") run(true);
  });
  $("live").addEventListener("click", () => { state.live = !state.live; writeUrl(false); restartTail(); });
  $("more").addEventListener("click", loadMore);
  $("context-close").addEventListener("click", closeContext);
  $("export").addEventListener("click", exportResults);
  $("help-button").addEventListener("click", () => {
    const help = $("help");
    help.hidden = !help.hidden;
    $("help-button").setAttribute("aria-expanded", String(!help.hidden));
  });
  $("theme").addEventListener("click", () => {
    const dark = getComputedStyle(document.documentElement).colorScheme === "dark";
    const next = dark ? "light" : "dark";
    localStorage.setItem("podlog.theme", next);
    applyTheme(next);
  });
  window.addEventListener("popstate", () => { readUrl(); syncForm(); run(false); });
  setupHistogramZoom();
  setupKeys();
  whoami().then(() => run(false));
}

document.addEventListener("DOMContentLoaded", init);
