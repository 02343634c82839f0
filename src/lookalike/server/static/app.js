// lookalike web page: pick/drop/paste a query image, draw a region, browse the hits and
// compare the query with a hit side by side. Plain ES module, no dependencies.

const $ = (selector) => document.querySelector(selector);

const els = {
  status: $("#status"),
  message: $("#message"),
  messageText: $("#message-text"),
  messageClose: $("#message-close"),
  dropZone: $("#drop-zone"),
  queryFile: $("#query-file"),
  queryArea: $("#query-area"),
  queryCanvas: $("#query-canvas"),
  queryControls: $("#query-controls"),
  regionInput: $("#region-input"),
  kInput: $("#k-input"),
  modeInput: $("#mode-input"),
  searchRegion: $("#search-region"),
  clearRegion: $("#clear-region"),
  addForm: $("#add-form"),
  addFiles: $("#add-files"),
  addUpload: $("#add-upload"),
  tokenRow: $("#token-row"),
  tokenInput: $("#token-input"),
  progressRow: $("#add-progress-row"),
  progress: $("#add-progress"),
  progressText: $("#add-progress-text"),
  results: $("#results"),
  resultsSummary: $("#results-summary"),
  compare: $("#compare"),
  compareClose: $("#compare-close"),
  compareCaption: $("#compare-caption"),
  compareCanvas: $("#compare-canvas"),
  tabGallery: $("#tab-gallery"),
  tabGroups: $("#tab-groups"),
  galleryPanel: $("#gallery-panel"),
  gallery: $("#gallery"),
  gallerySummary: $("#gallery-summary"),
  galleryMore: $("#gallery-more"),
  groupsPanel: $("#groups-panel"),
  groups: $("#groups"),
  groupsSummary: $("#groups-summary"),
};

const MIN_REGION_PX = 4; // a drag shorter than this (on screen) is a click, not a box
const MAX_LINES = 300; // matched-point lines drawn in the comparison view
const POLL_MS = 700;
const GALLERY_PAGE = 60; // thumbnails a "Show more" adds

const state = {
  query: null, // {kind: "file", file, url} or {kind: "id", id, path, url}
  image: null, // the query's HTMLImageElement, loaded
  serverSize: null, // [w, h] of the query as the server sees it
  region: null, // [x, y, w, h] in the query image's natural pixels, or null
  drag: null, // {pointerId, x0, y0} while drawing a box, natural pixels
  view: null, // {scale} natural pixels -> CSS pixels on the query canvas
  response: null, // last search response
  searchToken: 0, // ignores the answers of superseded searches
  compareHit: null,
  compareOpener: null,
  indexing: false, // the collection's first index is being made
  indexingTimer: 0, // the next reading of the status while it is
  gallery: { shown: 0, total: null, loading: false },
  groups: { loaded: false, loading: false },
};

// --- messages and API -------------------------------------------------------

function showError(text) {
  els.messageText.textContent = text;
  els.message.hidden = false;
}

function clearError() {
  els.message.hidden = true;
  els.messageText.textContent = "";
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const token = els.tokenInput.value.trim() || sessionStorage.getItem("lookalike-token") || "";
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(`Cannot reach the server (${error.message}).`, 0);
  }
  let body = null;
  const text = await response.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const reason = body && typeof body.error === "string" ? body.error : text || response.statusText;
    throw new ApiError(`${reason} (HTTP ${response.status})`, response.status);
  }
  if (body === null) throw new ApiError(`The server sent no JSON for ${path}.`, response.status);
  return body;
}

// --- status line ------------------------------------------------------------

function describeModel(model) {
  if (!model) return "no model";
  const name = model.backbone || model.features || model.name || "model";
  return model.id ? `${name} (${model.id})` : name;
}

async function refreshStatus() {
  try {
    const status = await api("/api/status");
    const parts = [
      `${status.images} image${status.images === 1 ? "" : "s"}`,
      `generation ${status.generation}`,
      `model ${describeModel(status.model)}`,
    ];
    if (status.failed.length) parts.push(`${status.failed.length} failed`);
    els.status.textContent = parts.join(" · ");
    if (status.token_required) els.tokenRow.hidden = false;
    showIndexing(status.indexing);
  } catch (error) {
    els.status.textContent = "Status unavailable";
    showError(`Status: ${error.message}`);
    if (state.indexing) state.indexingTimer = setTimeout(refreshStatus, POLL_MS);
  }
}

// While a new collection's first index is made, the status line says how far it has got
// ("indexing: 3 of 12 images") and is read again until the index is there; then the page
// shows the collection.
function showIndexing(indexing) {
  const was = state.indexing;
  state.indexing = Boolean(indexing);
  if (indexing) {
    els.status.textContent = indexing.message;
    els.status.dataset.indexing = "true";
    clearTimeout(state.indexingTimer);
    state.indexingTimer = setTimeout(refreshStatus, POLL_MS);
  } else {
    delete els.status.dataset.indexing;
    if (was) collectionChanged();
  }
}

// --- choosing the query -----------------------------------------------------

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not display this image"));
    img.src = url;
  });
}

// A query the browser cannot show (a TIFF, say) is shown through the server's PNG preview.
async function previewUrl(query) {
  if (query.kind === "id") return `/api/images/${query.id}/preview`;
  const form = new FormData();
  form.append("image", query.file, query.name);
  let response;
  try {
    response = await fetch("/api/preview", { method: "POST", body: form });
  } catch (error) {
    throw new Error(`the browser could not display this image, nor reach the server (${error.message})`);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new Error(body && body.error ? `${body.error} (HTTP ${response.status})` : `HTTP ${response.status}`);
  }
  return URL.createObjectURL(await response.blob());
}

async function loadQueryImage(query) {
  try {
    return await loadImage(query.url);
  } catch {
    const url = await previewUrl(query);
    if (query.kind === "file") URL.revokeObjectURL(query.url);
    query.url = url;
    query.preview = true;
    return loadImage(url);
  }
}

async function setQuery(query) {
  clearError();
  let img;
  try {
    img = await loadQueryImage(query);
  } catch (error) {
    showError(`Query image: ${error.message}.`);
    return;
  }
  if (state.query && state.query.url.startsWith("blob:")) URL.revokeObjectURL(state.query.url);
  state.query = query;
  state.image = img;
  els.queryArea.dataset.preview = query.preview ? "true" : "false";
  els.queryArea.dataset.imageSize = `${img.naturalWidth},${img.naturalHeight}`;
  state.serverSize = null;
  state.region = null;
  els.regionInput.value = "";
  els.queryArea.hidden = false;
  els.queryControls.hidden = false;
  drawQuery();
  await search();
}

function setQueryFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`“${file.name}” is not an image (${file.type}); choose a JPEG, PNG or WebP file.`);
    return;
  }
  setQuery({ kind: "file", file, url: URL.createObjectURL(file), name: file.name || "pasted image" });
}

function setQueryId(id, path) {
  setQuery({ kind: "id", id, path, url: `/api/images/${id}` });
}

els.queryFile.addEventListener("change", () => {
  setQueryFile(els.queryFile.files[0]);
  els.queryFile.value = ""; // choosing the same file again still searches
});

function hasFiles(event) {
  return event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
}

document.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
  els.dropZone.classList.add("dragging");
});

document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) els.dropZone.classList.remove("dragging");
});

document.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  els.dropZone.classList.remove("dragging");
  const file = Array.from(event.dataTransfer.files).find((f) => f.type.startsWith("image/"));
  if (file) setQueryFile(file);
  else showError("Drop an image file (JPEG, PNG, WebP…).");
});

document.addEventListener("paste", (event) => {
  const items = Array.from((event.clipboardData && event.clipboardData.items) || []);
  const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
  if (!item) return;
  event.preventDefault();
  setQueryFile(item.getAsFile());
});

// --- the query canvas and its region -----------------------------------------

function naturalSize() {
  return [state.image.naturalWidth, state.image.naturalHeight];
}

function drawQuery() {
  const img = state.image;
  if (!img) return;
  const canvas = els.queryCanvas;
  const [nw, nh] = naturalSize();
  const maxWidth = Math.max(120, els.queryArea.clientWidth);
  const maxHeight = Math.max(160, window.innerHeight * 0.6);
  const scale = Math.min(maxWidth / nw, maxHeight / nh, 1.5);
  const w = Math.round(nw * scale);
  const h = Math.round(nh * scale);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  state.view = { scale };
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(img, 0, 0, w, h);
  if (state.region) {
    const [x, y, rw, rh] = state.region.map((v) => v * scale);
    ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
    ctx.beginPath();
    ctx.rect(0, 0, w, h);
    ctx.rect(x, y, rw, rh);
    ctx.fill("evenodd");
    strokeRect(ctx, x, y, rw, rh, "#ffd60a");
  }
}

function strokeRect(ctx, x, y, w, h, colour) {
  ctx.lineWidth = 3;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.7)";
  ctx.strokeRect(x, y, w, h);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = colour;
  ctx.strokeRect(x, y, w, h);
}

function canvasPoint(event) {
  const rect = els.queryCanvas.getBoundingClientRect();
  const [nw, nh] = naturalSize();
  const x = (event.clientX - rect.left) / state.view.scale;
  const y = (event.clientY - rect.top) / state.view.scale;
  return [Math.min(Math.max(x, 0), nw), Math.min(Math.max(y, 0), nh)];
}

function setRegion(region) {
  state.region = region;
  els.regionInput.value = region ? region.map((v) => Math.round(v)).join(", ") : "";
  els.regionInput.removeAttribute("aria-invalid");
  drawQuery();
}

els.queryCanvas.addEventListener("pointerdown", (event) => {
  if (!state.image || event.button !== 0) return;
  event.preventDefault();
  els.queryCanvas.setPointerCapture(event.pointerId);
  const [x0, y0] = canvasPoint(event);
  state.drag = { pointerId: event.pointerId, x0, y0, previous: state.region };
});

els.queryCanvas.addEventListener("pointermove", (event) => {
  const drag = state.drag;
  if (!drag || drag.pointerId !== event.pointerId) return;
  const [x1, y1] = canvasPoint(event);
  state.region = [Math.min(drag.x0, x1), Math.min(drag.y0, y1), Math.abs(x1 - drag.x0), Math.abs(y1 - drag.y0)];
  drawQuery();
});

function endDrag(event) {
  const drag = state.drag;
  if (!drag || drag.pointerId !== event.pointerId) return;
  state.drag = null;
  const region = state.region;
  const tiny = !region || Math.min(region[2], region[3]) * state.view.scale < MIN_REGION_PX;
  setRegion(tiny ? drag.previous : region);
}

els.queryCanvas.addEventListener("pointerup", endDrag);
els.queryCanvas.addEventListener("pointercancel", endDrag);

function parseRegion(text) {
  const trimmed = text.trim();
  if (!trimmed) return null;
  const values = trimmed.split(/[\s,]+/).map(Number);
  if (values.length !== 4 || values.some((v) => !Number.isFinite(v))) {
    throw new Error("Region must be four numbers: x, y, width, height (in image pixels).");
  }
  const [nw, nh] = naturalSize();
  const [x, y, w, h] = values;
  if (w <= 0 || h <= 0 || x < 0 || y < 0 || x + w > nw || y + h > nh) {
    throw new Error(`Region must lie inside the ${nw}×${nh} image and have a positive size.`);
  }
  return values;
}

els.regionInput.addEventListener("change", () => {
  try {
    setRegion(parseRegion(els.regionInput.value));
    clearError();
  } catch (error) {
    els.regionInput.setAttribute("aria-invalid", "true");
    showError(error.message);
  }
});

els.queryControls.addEventListener("submit", (event) => {
  event.preventDefault();
  try {
    state.region = parseRegion(els.regionInput.value);
  } catch (error) {
    els.regionInput.setAttribute("aria-invalid", "true");
    showError(error.message);
    return;
  }
  drawQuery();
  search();
});

els.modeInput.addEventListener("change", () => {
  if (state.query) search();
});

els.clearRegion.addEventListener("click", () => {
  const had = state.region !== null;
  setRegion(null);
  if (had) search();
});

// --- searching ----------------------------------------------------------------

function regionForServer() {
  if (!state.region) return null;
  const [nw, nh] = naturalSize();
  // The server measures the image as seen at full size; the browser normally agrees, but
  // scale anyway in case it decoded the image at another size or orientation.
  const [sw, sh] = state.serverSize || [nw, nh];
  const [x, y, w, h] = state.region;
  const fx = sw / nw;
  const fy = sh / nh;
  const box = [x * fx, y * fy, w * fx, h * fy].map((v) => Math.round(v));
  box[2] = Math.max(1, Math.min(box[2], sw - box[0]));
  box[3] = Math.max(1, Math.min(box[3], sh - box[1]));
  return box;
}

async function search() {
  if (!state.query) return;
  const token = ++state.searchToken;
  const form = new FormData();
  if (state.query.kind === "file") form.append("image", state.query.file, state.query.file.name || "query.png");
  else form.append("id", String(state.query.id));
  const region = regionForServer();
  if (region) form.append("region", region.join(","));
  const k = Number.parseInt(els.kInput.value, 10);
  if (Number.isFinite(k) && k > 0) form.append("k", String(k));
  const mode = els.modeInput.value;
  if (mode) form.append("mode", mode);

  els.results.dataset.state = "loading";
  els.results.setAttribute("aria-busy", "true");
  els.resultsSummary.textContent = region ? "Searching the region…" : "Searching…";
  let response;
  try {
    response = await api("/api/search", { method: "POST", body: form });
  } catch (error) {
    if (token !== state.searchToken) return;
    els.results.dataset.state = "error";
    els.results.removeAttribute("aria-busy");
    els.resultsSummary.textContent = "The search failed.";
    showError(`Search: ${error.message}`);
    return;
  }
  if (token !== state.searchToken) return;
  clearError();
  state.response = response;
  state.serverSize = [response.query.width, response.query.height];
  renderResults(response, mode);
}

function formatScore(score) {
  return typeof score === "number" ? score.toFixed(3) : "–";
}

// Matches come first (the server ranks them so): a line is drawn where they end.
function renderResults(response, mode = "") {
  const list = els.results;
  list.replaceChildren();
  const matches = response.hits.filter((hit) => hit.verdict === "match").length;
  list.dataset.mode = mode;
  response.hits.forEach((hit, i) => {
    if (i === matches && matches > 0) list.append(matchesLine(matches));
    list.append(resultCard(hit));
  });
  els.results.dataset.matches = String(matches);
  els.resultsSummary.textContent =
    mode === "similar" ? kindSummary(response) : resultsSummary(response, matches);
  list.dataset.region = response.query.region ? response.query.region.join(",") : "";
  list.dataset.querySize = `${response.query.width},${response.query.height}`;
  list.dataset.search = String(Number(list.dataset.search || 0) + 1);
  list.dataset.state = "done";
  list.removeAttribute("aria-busy");
  bringIntoView(els.resultsSummary);
}

// On a phone the results lie below the query (and the gallery below them): the answer is
// scrolled into view when it is out of sight.
function bringIntoView(element) {
  const box = element.getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) element.scrollIntoView({ block: "start" });
}

function resultsSummary(response, matches) {
  const n = response.hits.length;
  const where = response.query.region ? ` for region ${response.query.region.join(", ")}` : "";
  const seconds = typeof response.seconds === "number" ? ` in ${response.seconds.toFixed(2)} s` : "";
  if (!n) return `No results${where}.`;
  const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "es"}`;
  const found = matches
    ? `${plural(matches, "match")} in the collection${where}`
    : `No match in the collection${where}: nothing shows the same object or scene for sure`;
  const others = n - matches;
  const rest = others ? `${matches ? ", then" : "."} ${others} other result${others === 1 ? "" : "s"}` : "";
  return `${found}${rest}${seconds}. Press Enter on a result to compare it with the query.`;
}

// A search for the same kind of thing verifies nothing: no matches, no line.
function kindSummary(response) {
  const n = response.hits.length;
  const where = response.query.region ? ` for region ${response.query.region.join(", ")}` : "";
  if (!n) return `No results${where}.`;
  const seconds = typeof response.seconds === "number" ? ` in ${response.seconds.toFixed(2)} s` : "";
  return (
    `${n} image${n === 1 ? "" : "s"} of the same kind of thing${where}, the most alike first` +
    ` (not checked for the same object)${seconds}. Press Enter on a result to compare it with the query.`
  );
}

function matchesLine(matches) {
  const line = document.createElement("li");
  line.className = "matches-line";
  line.setAttribute("role", "separator");
  line.textContent = `Above: ${matches === 1 ? "the match" : "the matches"}. Below: not the same for sure.`;
  return line;
}

function verdictText(hit) {
  const alike = typeof hit.similarity === "number" ? ` (similarity ${hit.similarity.toFixed(2)})` : "";
  return `${hit.verdict}${alike}`;
}

function resultCard(hit) {
  const card = document.createElement("li");
  card.className = "hit";
  card.tabIndex = 0;
  card.dataset.id = String(hit.id);
  card.dataset.path = hit.path;
  card.dataset.rank = String(hit.rank);
  card.dataset.verdict = hit.verdict;
  const inliers = hit.inliers === null || hit.inliers === undefined ? "" : `, ${hit.inliers} inliers`;
  card.setAttribute(
    "aria-label",
    `Rank ${hit.rank}: ${hit.path}, ${verdictText(hit)}${inliers}. Press Enter to compare.`,
  );

  const thumb = document.createElement("img");
  thumb.className = "thumb";
  thumb.src = hit.thumb_url;
  thumb.alt = "";
  thumb.loading = "lazy";
  thumb.decoding = "async";

  const meta = document.createElement("div");
  meta.className = "meta";
  const top = document.createElement("p");
  top.className = "numbers";
  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = `#${hit.rank}`;
  const verdict = document.createElement("span");
  verdict.className = `verdict verdict-${hit.verdict}`;
  verdict.textContent = hit.verdict;
  const score = document.createElement("span");
  score.className = "score";
  // a search for the same kind of thing has no similarity scale: its score is a cosine
  score.textContent =
    hit.similarity === null || hit.similarity === undefined
      ? `score ${formatScore(hit.score)}`
      : `similarity ${formatScore(hit.similarity)}`;
  top.append(rank, verdict, score);
  if (inliers) {
    const count = document.createElement("span");
    count.className = "inliers";
    count.textContent = `${hit.inliers} inliers`;
    top.append(count);
  }
  const path = document.createElement("p");
  path.className = "path";
  path.textContent = hit.path;
  path.title = hit.path;

  const similar = document.createElement("button");
  similar.type = "button";
  similar.className = "find-similar";
  similar.textContent = "Find similar";
  similar.setAttribute("aria-label", `Find images similar to ${hit.path}`);
  similar.addEventListener("click", (event) => {
    event.stopPropagation();
    setQueryId(hit.id, hit.path);
  });
  similar.addEventListener("keydown", (event) => event.stopPropagation());

  meta.append(top, path, similar);
  card.append(thumb, meta);
  card.addEventListener("click", () => openCompare(hit, card));
  card.addEventListener("keydown", (event) => {
    if (event.target !== card) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openCompare(hit, card);
    }
  });
  return card;
}

// --- side-by-side comparison --------------------------------------------------

async function openCompare(hit, opener) {
  state.compareHit = hit;
  state.compareOpener = opener;
  els.compareCanvas.dataset.drawn = "false";
  const verified = hit.inliers === null || hit.inliers === undefined ? "not verified" : `${hit.inliers} inliers`;
  els.compareCaption.textContent = `#${hit.rank} ${hit.path} — ${verdictText(hit)}, ${verified}`;
  if (!els.compare.open) els.compare.showModal();
  els.compareClose.focus();
  await drawCompare();
}

function closeCompare() {
  if (els.compare.open) els.compare.close();
}

els.compareClose.addEventListener("click", closeCompare);
els.compare.addEventListener("close", () => {
  // The close event comes a task after the dialog closed: if another hit was opened in
  // between (Enter right after a click on "close"), the dialog is open again and its hit
  // must stay, or its drawing is dropped.
  if (els.compare.open) return;
  const opener = state.compareOpener;
  state.compareHit = null;
  state.compareOpener = null;
  // The browser usually puts focus back itself; this covers the cases where it does not.
  // (Focus may have moved on since the dialog closed.)
  const active = document.activeElement;
  const lost = !active || active === document.body || els.compare.contains(active);
  if (lost && opener && opener.isConnected) opener.focus();
});
// A click on the backdrop (outside the dialog's box) closes it too.
els.compare.addEventListener("click", (event) => {
  if (event.target !== els.compare) return;
  const r = els.compare.getBoundingClientRect();
  const inside = event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
  if (!inside) closeCompare();
});

const hitImages = new Map(); // image_url -> Promise<HTMLImageElement>

function hitImage(url) {
  if (!hitImages.has(url)) {
    const promise = loadImage(url);
    promise.catch(() => hitImages.delete(url));
    hitImages.set(url, promise);
  }
  return hitImages.get(url);
}

async function drawCompare() {
  const hit = state.compareHit;
  const response = state.response;
  if (!hit || !response || !state.image) return;
  let right;
  try {
    right = await hitImage(hit.image_url);
  } catch (error) {
    showError(`Could not load ${hit.path}: ${error.message}.`);
    return;
  }
  if (state.compareHit !== hit) return;
  const left = state.image;

  // Sizes in each side's own coordinates: what the API's points are measured in.
  const qw = response.query.width || left.naturalWidth;
  const qh = response.query.height || left.naturalHeight;
  const hw = hit.width || right.naturalWidth;
  const hh = hit.height || right.naturalHeight;

  const gap = 16;
  const available = Math.max(200, els.compareCanvas.parentElement.clientWidth);
  const maxHeight = Math.max(200, window.innerHeight * 0.7);
  const sideBySide = available >= 520;
  let a; // query placement {x, y, s}
  let b; // hit placement
  let width;
  let height;
  if (sideBySide) {
    // Both at the same height, fitting the width.
    const h = Math.min(maxHeight, (available - gap) / (qw / qh + hw / hh));
    const sa = h / qh;
    const sb = h / hh;
    a = { x: 0, y: 0, s: sa };
    b = { x: qw * sa + gap, y: 0, s: sb };
    width = Math.ceil(b.x + hw * sb);
    height = Math.ceil(h);
  } else {
    // Stacked on a narrow screen: the query above, the hit below.
    const sa = Math.min(available / qw, maxHeight / 2 / qh);
    const sb = Math.min(available / hw, maxHeight / 2 / hh);
    a = { x: (available - qw * sa) / 2, y: 0, s: sa };
    b = { x: (available - hw * sb) / 2, y: qh * sa + gap, s: sb };
    width = Math.ceil(available);
    height = Math.ceil(b.y + hh * sb);
  }

  const canvas = els.compareCanvas;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.drawImage(left, a.x, a.y, qw * a.s, qh * a.s);
  ctx.drawImage(right, b.x, b.y, hw * b.s, hh * b.s);

  const qp = ([x, y]) => [a.x + x * a.s, a.y + y * a.s];
  const hp = ([x, y]) => [b.x + x * b.s, b.y + y * b.s];

  if (response.query.region) {
    const [x, y, w, h] = response.query.region;
    const [x0, y0] = qp([x, y]);
    strokeRect(ctx, x0, y0, w * a.s, h * a.s, "#ffd60a");
  }

  const matches = hit.matches;
  if (matches && matches.query && matches.image) {
    const n = Math.min(matches.query.length, matches.image.length);
    const step = Math.max(1, Math.ceil(n / MAX_LINES));
    ctx.lineWidth = 1;
    for (let i = 0; i < n; i += step) {
      const [x0, y0] = qp(matches.query[i]);
      const [x1, y1] = hp(matches.image[i]);
      const colour = `hsl(${Math.round((i * 137.5) % 360)}, 90%, 55%)`;
      ctx.strokeStyle = colour;
      ctx.globalAlpha = 0.8;
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(x1, y1);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.fillStyle = colour;
      for (const [px, py] of [
        [x0, y0],
        [x1, y1],
      ]) {
        ctx.beginPath();
        ctx.arc(px, py, 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }

  if (hit.box) {
    ctx.beginPath();
    hit.box.forEach((point, i) => {
      const [x, y] = hp(point);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.closePath();
    ctx.lineWidth = 4;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.7)";
    ctx.stroke();
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#39ff88";
    ctx.stroke();
  }
  canvas.dataset.drawn = "true";
  canvas.dataset.lines = matches && matches.query ? String(Math.min(matches.query.length, MAX_LINES)) : "0";
}

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    drawQuery();
    if (els.compare.open) drawCompare();
  }, 100);
});

// --- adding images ------------------------------------------------------------

els.tokenInput.addEventListener("change", () => {
  const token = els.tokenInput.value.trim();
  if (token) sessionStorage.setItem("lookalike-token", token);
  else sessionStorage.removeItem("lookalike-token");
});

els.addForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = Array.from(els.addFiles.files);
  if (!files.length) {
    showError("Choose one or more images to add first.");
    els.addFiles.focus();
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  els.addUpload.disabled = true;
  els.progressRow.hidden = false;
  els.progress.removeAttribute("value"); // indeterminate while uploading
  els.progressText.textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`;
  try {
    const answer = await api("/api/images", { method: "POST", body: form, headers: authHeaders() });
    clearError();
    const rejected = answer.rejected || [];
    if (rejected.length) {
      showError(`Not added: ${rejected.map((r) => `${r.name} (${r.reason})`).join("; ")}`);
    }
    els.addFiles.value = "";
    await followJob(answer.job, (answer.saved || []).length);
  } catch (error) {
    els.progressRow.hidden = true;
    if (error.status === 401) {
      els.tokenRow.hidden = false;
      els.tokenInput.focus();
      showError(`${error.message}. Enter the access token and press Upload again.`);
    } else {
      showError(`Adding images: ${error.message}`);
    }
  } finally {
    els.addUpload.disabled = false;
  }
});

function showJob(job) {
  const total = job.total || 0;
  if (total > 0) {
    els.progress.max = total;
    els.progress.value = job.done || 0;
  } else {
    els.progress.removeAttribute("value");
  }
  const stage = job.stage ? ` – ${job.stage}` : "";
  const counts = total > 0 ? ` ${job.done}/${total}` : "";
  els.progressText.textContent = `${job.state}${stage}${counts}`;
}

async function followJob(job, saved) {
  showJob(job);
  while (job.state === "queued" || job.state === "running") {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    job = await api(`/api/jobs/${encodeURIComponent(job.id)}`, { headers: authHeaders() });
    showJob(job);
  }
  if (job.state === "failed") {
    showError(`Indexing failed: ${job.error || "no reason given"}`);
  } else {
    els.progress.max = 1;
    els.progress.value = 1;
    els.progressText.textContent = `Done: ${saved} file${saved === 1 ? "" : "s"} saved and indexed.`;
  }
  await refreshStatus();
  collectionChanged();
}

// --- the collection: a gallery and the groups of near copies ---------------------------

function selectTab(tab) {
  for (const [button, panel] of [
    [els.tabGallery, els.galleryPanel],
    [els.tabGroups, els.groupsPanel],
  ]) {
    const selected = button === tab;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    panel.hidden = !selected;
  }
  if (tab === els.tabGallery && state.gallery.total === null) loadGalleryPage();
  if (tab === els.tabGroups && !state.groups.loaded) loadGroups();
}

for (const tab of [els.tabGallery, els.tabGroups]) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const other = tab === els.tabGallery ? els.tabGroups : els.tabGallery;
    other.focus();
    selectTab(other);
  });
}

// The collection changed (its first index is there, images were added): show it again.
function collectionChanged() {
  state.gallery = { shown: 0, total: null, loading: false };
  state.groups = { loaded: false, loading: false };
  els.gallery.replaceChildren();
  els.groups.replaceChildren();
  const open = els.tabGroups.getAttribute("aria-selected") === "true" ? els.tabGroups : els.tabGallery;
  selectTab(open);
}

function thumbnail(image, size) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.src = size ? `${image.thumb_url}?size=${size}` : image.thumb_url;
  img.alt = image.path;
  img.loading = "lazy";
  img.decoding = "async";
  return img;
}

function findSimilarButton(image) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "find-similar";
  button.textContent = "Find similar";
  button.setAttribute("aria-label", `Find images similar to ${image.path}`);
  button.addEventListener("click", () => setQueryId(image.id, image.path));
  return button;
}

function galleryCard(image) {
  const card = document.createElement("li");
  card.className = "gallery-item";
  card.dataset.id = String(image.id);
  card.dataset.path = image.path;
  const path = document.createElement("p");
  path.className = "path";
  path.textContent = image.path;
  path.title = image.path;
  card.append(thumbnail(image), path, findSimilarButton(image));
  return card;
}

async function loadGalleryPage() {
  const gallery = state.gallery;
  if (gallery.loading) return;
  if (state.indexing) {
    els.gallerySummary.textContent = "The collection is being indexed; it is shown here once that is done.";
    return;
  }
  gallery.loading = true;
  els.galleryMore.disabled = true;
  try {
    const page = await api(`/api/images?offset=${gallery.shown}&limit=${GALLERY_PAGE}`);
    els.gallery.append(...page.images.map(galleryCard));
    gallery.shown += page.images.length;
    gallery.total = page.total;
    els.gallerySummary.textContent = page.total
      ? `Showing ${gallery.shown} of ${page.total} images.`
      : "The collection has no images yet.";
    els.galleryMore.hidden = gallery.shown >= page.total || page.images.length === 0;
  } catch (error) {
    els.gallerySummary.textContent = "The gallery could not be loaded.";
    showError(`Gallery: ${error.message}`);
  } finally {
    gallery.loading = false;
    els.galleryMore.disabled = false;
  }
}

els.galleryMore.addEventListener("click", loadGalleryPage);

async function loadGroups() {
  const groups = state.groups;
  if (groups.loading) return;
  if (state.indexing) {
    els.groupsSummary.textContent = "The collection is being indexed; its groups are found once that is done.";
    return;
  }
  groups.loading = true;
  try {
    let answer = await api("/api/groups");
    while (answer.job) {
      els.groupsSummary.textContent = `Finding the groups of near copies (${describeJob(answer.job)})…`;
      await followGroupsJob(answer.job);
      answer = await api("/api/groups");
    }
    renderGroups(answer.groups);
    groups.loaded = true;
  } catch (error) {
    els.groupsSummary.textContent = "The groups could not be found.";
    showError(`Groups: ${error.message}`);
  } finally {
    groups.loading = false;
  }
}

function describeJob(job) {
  const counts = job.total > 0 ? ` ${job.done} of ${job.total}` : "";
  return `${job.stage || job.state}${counts}`;
}

async function followGroupsJob(job) {
  while (job.state === "queued" || job.state === "running") {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    job = await api(`/api/jobs/${encodeURIComponent(job.id)}`);
    els.groupsSummary.textContent = `Finding the groups of near copies (${describeJob(job)})…`;
  }
}

function renderGroups(groups) {
  els.groups.replaceChildren(...groups.map(groupCard));
  const n = groups.length;
  els.groupsSummary.textContent = n
    ? `${n} group${n === 1 ? "" : "s"} of copies, largest first.`
    : "No image of the collection is a copy of another.";
}

function groupCard(group) {
  const card = document.createElement("li");
  card.className = "group";
  card.dataset.size = String(group.images.length);
  const caption = document.createElement("p");
  caption.className = "hint";
  const kind = group.kind === "exact" ? "exact copies" : "near copies";
  caption.textContent = `${group.images.length} images · ${kind}`;
  const row = document.createElement("ul");
  row.className = "group-images";
  for (const image of group.images) {
    const item = document.createElement("li");
    item.className = "group-image";
    item.dataset.path = image.path;
    const path = document.createElement("p");
    path.className = "path";
    path.textContent = image.path;
    item.append(thumbnail(image, 160), path, findSimilarButton(image));
    row.append(item);
  }
  card.append(caption, row);
  return card;
}

// --- start ------------------------------------------------------------------------

els.messageClose.addEventListener("click", clearError);
els.tokenInput.value = sessionStorage.getItem("lookalike-token") || "";
refreshStatus().then(() => selectTab(els.tabGallery));
