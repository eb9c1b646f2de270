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
};
window.roomclf = app;  // read by the browser tests (pending writes, saved count)

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(method, url, body) {
  app.pending++;
  try {
    const res = await fetch(url + q(), {
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

// ---- modes and keys ------------------------------------------------------------------
async function setMode(mode) {
  app.mode = mode;
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("hidden", v.id !== mode);
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.mode === mode);
  if (mode === "confirm") await loadPages(0);
  if (mode === "review") await loadReview();
  if (mode === "single") { app.queue = await api("GET", "/api/queue", null); renderSingle(); }
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
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
  }
});

async function start() {
  for (const t of document.querySelectorAll(".tab")) t.onclick = () => setMode(t.dataset.mode);
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
