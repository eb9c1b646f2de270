// roomclf labelling app: every action is sent to the server at once (no save button).
"use strict";

const who = new URLSearchParams(location.search).get("who") || "";
const q = (params = {}) => {
  const p = new URLSearchParams(params);
  if (who) p.set("who", who);
  return p.toString() ? "?" + p.toString() : "";
};
const $ = (id) => document.getElementById(id);

const app = {
  mode: "single", state: null, queue: [], idx: 0, selected: null,
  pages: [], page: 0, outliers: new Set(), undo: [], pending: 0, saved: 0,
  tags: { room: null, attribute: null, grid: [], cursor: 0, loaded: 0, loading: false, last: null },
};
window.roomclf = app;  // read by the browser tests (pending writes, saved count)

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(method, url, body, params = {}) {
  app.pending++;
  try {
    const res = await fetch(url + q(params), {
      method, headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const msg = data.error || (data.detail ? JSON.stringify(data.detail) : res.statusText);
      status("not saved: " + msg, true);
      throw new Error(msg);
    }
    if (method === "POST") { app.saved++; status("saved " + new Date().toLocaleTimeString()); }
    if (data.per_class) showProgress(data);
    return data;
  } finally {
    app.pending--;
  }
}

function thumbUrl(path, size = "small") { return "/api/thumb" + "?" + new URLSearchParams({ path, size }); }

function showProgress(p) {
  $("progress-text").textContent = `${p.labelled} / ${p.total}`;
  $("fill").style.width = p.total ? (100 * p.labelled / p.total) + "%" : "0";
  $("counts").innerHTML = "";
  for (const [c, n] of Object.entries(p.per_class)) {
    const s = document.createElement("span");
    s.textContent = `${c} ${n}`;
    s.dataset.cls = c;
    $("counts").appendChild(s);
  }
}

// ---- single photo --------------------------------------------------------------------
function current() { return app.queue[app.idx]; }

function renderSingle() {
  const item = current();
  if (!item) { $("where").textContent = "nothing to label"; return; }
  $("photo").src = thumbUrl(item.path, "large");
  $("photo").dataset.path = item.path;
  $("where").textContent = `${app.idx + 1} / ${app.queue.length} · ${item.path}` + (item.who ? ` · by ${item.who}` : "");
  const top3 = (item.top3 || []).map(([c, p]) => `${c} ${(100 * p).toFixed(0)}%`).join(", ");
  $("suggestion").textContent = item.suggestion ? `suggested: ${top3 || item.suggestion}` : "no suggestion";
  app.selected = item.label || item.suggestion || null;
  renderClasses();
}

function renderClasses() {
  const item = current();
  $("classes").innerHTML = "";
  app.state.classes.forEach((c, i) => {
    const b = document.createElement("button");
    b.innerHTML = `<kbd>${i + 1}</kbd> ${c}`;
    b.dataset.cls = c;
    if (c === app.selected) b.classList.add("selected");
    if (item && item.label === c) b.classList.add("saved");
    b.onclick = () => choose(c);
    $("classes").appendChild(b);
  });
  const list = $("attr-list");
  list.innerHTML = "";
  for (const name of (app.selected ? app.state.attributes[app.selected] : [])) {
    const key = `${app.selected}.${name}`;
    const l = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = name;
    box.checked = !!(item && item.attributes[key]);
    box.onchange = () => tick(name, box.checked);
    l.append(box, " " + name.replace(/_/g, " "));
    list.appendChild(l);
  }
}

function checkedAttributes() {
  const out = {};
  for (const box of $("attr-list").querySelectorAll("input")) if (box.checked) out[box.name] = 1;
  return out;
}

async function saveLabel(item, label, attributes) {
  const before = { path: item.path, label: item.label, attributes: { ...item.attributes } };
  await api("POST", "/api/label", { path: item.path, label, attributes });
  app.undo.push({ kind: "label", items: [before] });
  item.label = label;
  for (const [n, v] of Object.entries(attributes)) item.attributes[`${label}.${n}`] = v;
}

async function choose(label) {
  const item = current();
  if (!item) return;
  const keep = label === app.selected ? checkedAttributes() : {};
  app.selected = label;
  await saveLabel(item, label, keep);
  renderClasses();
}

async function tick(name, on) {
  const item = current();
  if (!item || !app.selected) return;
  const before = { path: item.path, label: item.label, attributes: { ...item.attributes } };
  await api("POST", "/api/attributes", { path: item.path, label: app.selected, attributes: { [name]: on ? 1 : 0 } });
  app.undo.push({ kind: "label", items: [before] });
  item.attributes[`${app.selected}.${name}`] = on ? 1 : 0;
}

async function acceptAndNext() {
  const item = current();
  if (!item || !app.selected) return;
  await saveLabel(item, app.selected, checkedAttributes());
  nextOpen();
}

function nextOpen() {
  for (let i = app.idx + 1; i < app.queue.length; i++) if (!app.queue[i].label) return moveTo(i);
  moveTo(Math.min(app.idx + 1, app.queue.length - 1));
}

function moveTo(i) {
  if (i < 0 || i >= app.queue.length) return;
  app.idx = i;
  renderSingle();
  api("POST", "/api/position", { path: current().path }).catch(() => {});
}

// ---- undo ----------------------------------------------------------------------------
async function undoLast() {
  const action = app.undo.pop();
  if (!action) { status("nothing to undo"); return; }
  if (action.kind === "tag") { await undoTag(action); status("undone"); return; }
  // each photo back as it was: its label (none: unlabelled) and, for a single photo, its ticks
  await api("POST", "/api/restore", { items: action.items });
  for (const b of action.items) {
    const item = app.queue.find((x) => x.path === b.path);
    if (!item) continue;
    item.label = b.label;
    item.attributes = b.attributes ? { ...b.attributes } : b.label ? item.attributes : {};
  }
  if (action.kind === "label") {
    const i = app.queue.findIndex((x) => x.path === action.items[0].path);
    if (i >= 0) moveTo(i);
  } else {
    await loadPages(app.page);
  }
  status("undone");
}

// ---- confirm pages -------------------------------------------------------------------
async function loadPages(keep = 0) {
  app.pages = await api("GET", "/api/pages", null);
  app.page = Math.min(keep, Math.max(0, app.pages.length - 1));
  app.outliers.clear();
  renderPage();
}

function renderPage() {
  const grid = $("grid");
  grid.innerHTML = "";
  const page = app.pages[app.page];
  if (!page) { $("page-head").textContent = "every suggested photo is labelled"; return; }
  $("page-head").textContent = `Page ${app.page + 1} / ${app.pages.length}: suggested ${page.label} (${page.paths.length} photos)`;
  page.paths.forEach((path, i) => {
    const f = document.createElement("figure");
    f.dataset.path = path;
    const img = document.createElement("img");
    img.src = thumbUrl(path);
    img.alt = path;
    const cap = document.createElement("figcaption");
    cap.textContent = `${(100 * page.confidences[i]).toFixed(0)}%`;
    f.append(img, cap);
    f.onclick = () => {
      if (app.outliers.has(path)) app.outliers.delete(path); else app.outliers.add(path);
      f.classList.toggle("outlier");
    };
    grid.appendChild(f);
  });
  const next = app.pages[app.page + 1];  // fetch the next page's thumbnails now, so paging is instant
  if (next) for (const path of next.paths) new Image().src = thumbUrl(path);
}

async function acceptPage() {
  const page = app.pages[app.page];
  if (!page) return;
  const paths = page.paths.filter((p) => !app.outliers.has(p));
  if (!paths.length) return;
  await api("POST", "/api/confirm", { items: paths.map((path) => ({ path, label: page.label })) });
  const before = paths.map((path) => ({ path, label: (app.queue.find((x) => x.path === path) || {}).label || null }));
  app.undo.push({ kind: "confirm", items: before });
  for (const path of paths) {
    const item = app.queue.find((x) => x.path === path);
    if (item) item.label = page.label;
  }
  await loadPages(app.page);
}

// ---- review --------------------------------------------------------------------------
async function loadReview() {
  const list = $("review-list");
  list.innerHTML = "";
  const items = await api("GET", "/api/review", null);
  if (!items.length) { list.textContent = "No suspicious labels (run `roomclf propagate` to find them)."; return; }
  for (const s of items) {
    const row = document.createElement("div");
    row.className = "review-item";
    const img = document.createElement("img");
    img.src = thumbUrl(s.path);
    const text = document.createElement("span");
    text.textContent = `${s.path}: labelled ${s.label}, neighbours say ${s.vote} (${(100 * (s.share || 0)).toFixed(0)}%)` +
      (s.manual ? ` · now ${s.manual}` : "");
    const keep = document.createElement("button");
    keep.textContent = `keep ${s.label}`;
    keep.onclick = () => api("POST", "/api/label", { path: s.path, label: s.label }).then(loadReview);
    const take = document.createElement("button");
    take.textContent = `use ${s.vote}`;
    take.onclick = () => api("POST", "/api/label", { path: s.path, label: s.vote }).then(loadReview);
    row.append(img, keep, take, text);
    list.appendChild(row);
  }
}

// ---- attribute mode: one attribute of one class, a grid at a time ------------------------
const ANSWER_KEYS = { y: "yes", n: "no", u: "unsure" };
const fmt = (x) => (x === null || x === undefined ? "-" : x.toFixed(2));

function fillTagRooms() {
  const rooms = app.state.classes;
  $("tag-room").innerHTML = "";
  for (const c of rooms) $("tag-room").append(new Option(c.replace(/_/g, " "), c));
  if (!app.tags.room) app.tags.room = rooms.find((c) => app.state.attributes[c].length) || rooms[0];
  $("tag-room").value = app.tags.room;
  fillTagAttributes();
}

function fillTagAttributes() {
  const names = app.state.attributes[app.tags.room] || [];
  if (!names.includes(app.tags.attribute)) app.tags.attribute = names[0] || null;
  $("tag-attr").innerHTML = "";
  for (const n of names) $("tag-attr").append(new Option(n.replace(/_/g, " "), n));
  if (app.tags.attribute) $("tag-attr").value = app.tags.attribute;
}

async function loadTagGrid() {
  const t = app.tags;
  if (!t.room || !t.attribute) {
    $("tag-head").textContent = `${t.room || "this class"} has no attribute yet: type one and Add`;
    $("tag-grid").innerHTML = "";
    t.grid = [];
    return;
  }
  t.loading = true;
  status("retraining the head…");
  try {
    const data = await api("GET", "/api/tags/grid", null, { room: t.room, attribute: t.attribute });
    t.grid = data.photos.map((p) => ({ ...p, answer: null }));
    t.cursor = 0;
    t.last = data;
    renderTagHead(data);
    renderTagGrid();
    for (const p of t.grid) new Image().src = thumbUrl(p.path);
    status(`head retrained in ${data.seconds} s`);
  } finally {
    t.loading = false;
    t.loaded++;
  }
}

function renderTagHead(d) {
  const h = d.head, el = $("tag-head");
  el.dataset.positives = h.positives;
  el.dataset.negatives = h.negatives;
  el.dataset.f1 = h.f1 === null ? "" : h.f1;
  const counts = `${d.key}: ${h.positives} yes · ${h.negatives} no · ${d.unsure} not sure; ` +
    `${d.open} open photos of ${d.room.replace(/_/g, " ")} in this batch. `;
  const head = h.f1 === null
    ? `No head yet (${h.note}): this grid is spread over the class.`
    : `Head, ${h.folds}-fold cross-validated: precision ${fmt(h.precision)} · recall ${fmt(h.recall)} · ` +
      `F1 ${fmt(h.f1)}. Grid: the photos it is least sure of, then its highest scored (a check).`;
  el.textContent = counts + head;
}

function renderTagGrid() {
  const t = app.tags, grid = $("tag-grid");
  grid.innerHTML = "";
  if (!t.grid.length) { grid.textContent = "No open photos of this class in this batch."; return; }
  t.grid.forEach((item, i) => {
    const f = document.createElement("figure");
    f.dataset.path = item.path;
    f.dataset.answer = item.answer || "";
    if (i === t.cursor) f.classList.add("cursor");
    const img = document.createElement("img");
    img.src = thumbUrl(item.path);
    img.alt = item.path;
    const cap = document.createElement("figcaption");
    const score = item.score === null ? "" : `${(100 * item.score).toFixed(0)}%`;
    cap.textContent = [score, item.answer ? item.answer.replace("unsure", "not sure") : ""].filter(Boolean).join(" · ");
    f.append(img, cap);
    f.onclick = () => { t.cursor = i; renderTagGrid(); };
    grid.appendChild(f);
  });
}

async function answerTag(answer) {
  const t = app.tags, i = t.cursor, item = t.grid[i];
  if (!item || t.loading) return;
  const before = item.answer, room = t.room, attribute = t.attribute;
  item.answer = answer;                       // shown at once; put back if the server refuses it
  let next = t.grid.findIndex((x, j) => j > i && !x.answer);
  if (next < 0) next = t.grid.findIndex((x) => !x.answer);
  t.cursor = next >= 0 ? next : i;
  renderTagGrid();
  try {
    await api("POST", "/api/tags/answer", { path: item.path, room, attribute, answer });
  } catch (err) {
    item.answer = before;
    t.cursor = i;
    renderTagGrid();
    return;
  }
  app.undo.push({ kind: "tag", path: item.path, room, attribute, before });
  if (t.room === room && t.attribute === attribute && !t.loading && t.grid.every((x) => x.answer)) await loadTagGrid();
}

async function undoTag(action) {
  await api("POST", "/api/tags/answer", { path: action.path, room: action.room, attribute: action.attribute,
                                          answer: action.before });
  const t = app.tags;
  if (t.room !== action.room || t.attribute !== action.attribute) return;
  let i = t.grid.findIndex((x) => x.path === action.path);
  if (i < 0) { t.grid.unshift({ path: action.path, score: null, answer: action.before }); i = 0; }
  else t.grid[i].answer = action.before;
  t.cursor = i;
  renderTagGrid();
}

async function addTagAttribute() {
  const name = $("tag-new").value.trim();
  if (!name) return;
  const res = await api("POST", "/api/tags/attribute", { room: app.tags.room, name });
  app.state.attributes[res.room] = res.attributes;
  app.tags.attribute = res.attribute;
  $("tag-new").value = "";
  $("tag-new").blur();
  fillTagAttributes();
  await loadTagGrid();
}

function tagKey(k, e) {
  const t = app.tags;
  const answer = ANSWER_KEYS[k.toLowerCase()];
  if (answer) answerTag(answer);
  else if (k === "Enter") { e.preventDefault(); if (!t.loading) loadTagGrid(); }
  else if (k === "ArrowRight") { t.cursor = Math.min(t.cursor + 1, t.grid.length - 1); renderTagGrid(); }
  else if (k === "ArrowLeft") { t.cursor = Math.max(t.cursor - 1, 0); renderTagGrid(); }
}

// ---- modes and keys ------------------------------------------------------------------
async function setMode(mode) {
  app.mode = mode;
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("hidden", v.id !== mode);
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.mode === mode);
  if (mode === "confirm") await loadPages(0);
  if (mode === "review") await loadReview();
  if (mode === "single") { app.queue = await api("GET", "/api/queue", null); renderSingle(); }
  if (mode === "tags") { fillTagRooms(); await loadTagGrid(); }
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.matches && e.target.matches("input[type=text], select")) return;   // typing a name, choosing
  const k = e.key;
  if (k === "Backspace") { e.preventDefault(); undoLast(); return; }
  if (app.mode === "single") {
    const n = parseInt(k, 10);
    if (n >= 1 && n <= app.state.classes.length) choose(app.state.classes[n - 1]);
    else if (k === "Enter") { e.preventDefault(); acceptAndNext(); }
    else if (k === "ArrowRight") moveTo(app.idx + 1);
    else if (k === "ArrowLeft") moveTo(app.idx - 1);
    else if (k === "s" || k === "S") nextOpen();
  } else if (app.mode === "confirm") {
    if (k === "Enter") { e.preventDefault(); acceptPage(); }
    else if (k === "ArrowRight") { app.page = Math.min(app.page + 1, app.pages.length - 1); app.outliers.clear(); renderPage(); }
    else if (k === "ArrowLeft") { app.page = Math.max(app.page - 1, 0); app.outliers.clear(); renderPage(); }
  } else if (app.mode === "tags") {
    tagKey(k, e);
  }
});

async function start() {
  for (const t of document.querySelectorAll(".tab")) t.onclick = () => setMode(t.dataset.mode);
  $("tag-room").onchange = () => {
    app.tags.room = $("tag-room").value;
    $("tag-room").blur();
    fillTagAttributes();
    loadTagGrid();
  };
  $("tag-attr").onchange = () => { app.tags.attribute = $("tag-attr").value; $("tag-attr").blur(); loadTagGrid(); };
  $("tag-add").onclick = () => addTagAttribute().catch(() => {});
  $("tag-new").onkeydown = (e) => { if (e.key === "Enter") { e.preventDefault(); addTagAttribute().catch(() => {}); } };
  app.state = await api("GET", "/api/state", null);
  $("title").textContent = `roomclf label · ${app.state.batch} · ${app.state.who}`;
  $("suspects").textContent = app.state.suspects;
  $("export").href = "/api/export.csv" + q();
  showProgress(app.state);
  app.queue = await api("GET", "/api/queue", null);
  let i = app.queue.findIndex((x) => x.path === app.state.position);
  if (i < 0) i = Math.max(0, app.queue.findIndex((x) => !x.label));
  app.idx = i;
  renderSingle();
  document.body.dataset.ready = "1";
}

start().catch((err) => status("could not start: " + err.message, true));
