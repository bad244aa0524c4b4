/* The inspection page: loads /info, sends each image to /predict (a few at a time), draws the image with its
 * any-defect and per-type overlays, re-decides every image when a threshold moves, and writes the table as
 * predict's predictions.csv (same columns, values written as Python's csv module writes them).
 *
 * Decisions follow the pipeline: decision_<type> = score_<type> >= threshold (false without one); anomalous =
 * anomaly_score >= the any-defect threshold. The predicted type is the server's, recomputed only when /info says
 * type_rule "calibrated" and a type threshold moved (argmax of score / threshold where that is finite and > 0). */
"use strict";

const KEY_STORE = "mtfcdd-api-key";
const ANY = "any_defect";
const IN_FLIGHT = 3;
const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  types: [], // {name, col, colour, rgb}
  calibrated: {}, // threshold name (type name or any_defect) -> number | null
  thresholds: {}, // the current ones
  range: {}, // threshold name -> slider maximum
  layers: {}, // layer name -> shown in the main view
  opacity: 0.65,
  items: [], // one per image, in load order
  queue: [],
  running: 0,
  sort: { key: "order", dir: 1 },
  filter: { decision: "all", type: "all" },
};

/* ---------- formatting: values as Python writes them ---------- */

/** A number as Python's repr(float) writes it (what csv.writer writes for a float): shortest round-trip digits,
 * fixed notation for 1e-4 <= |x| < 1e16 with a trailing ".0" on integers, else d.ddde[+-]XX. */
function pyFloat(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  let text = String(Math.abs(x));
  let exponent = 0;
  const e = text.indexOf("e");
  if (e >= 0) {
    exponent = parseInt(text.slice(e + 1), 10);
    text = text.slice(0, e);
  }
  const [whole, fraction = ""] = text.split(".");
  let digits = whole + fraction;
  let point = whole.length + exponent; // value = 0.<digits> x 10^point
  const zeros = digits.match(/^0*/)[0].length;
  digits = digits.slice(zeros).replace(/0+$/, "");
  point -= zeros;
  if (point > -4 && point <= 16) {
    if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
    if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}.0`;
    return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
  }
  const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const power = point - 1;
  return `${sign}${mantissa}e${power < 0 ? "-" : "+"}${String(Math.abs(power)).padStart(2, "0")}`;
}

/** A field as Python's csv.writer (QUOTE_MINIMAL) writes it. */
function csvField(value) {
  const text = typeof value === "number" ? pyFloat(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** A score for people: 4 significant digits. */
function short(x) {
  if (x === null || x === undefined) return "none";
  if (x === 0) return "0";
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : x.toPrecision(4).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

/** A type's name in predict's CSV columns (mtfcdd.model.outputs.column_name, as /info gives it); ANY's own. */
const columnName = (name) => (name === ANY ? ANY : state.types.find((t) => t.name === name).col);

/** predict's CSV columns, as /info gives them (mtfcdd.model.outputs.record_columns). */
const recordColumns = () => state.info.columns;

function hexToRgb(hex) {
  const v = parseInt(hex.replace("#", ""), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k === "role" || k.startsWith("aria-") || k === "title" || k === "for")
      node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** The small colour square of a type (its colour) or of the any-defect view (colour null: the ramp). */
function swatch(colour) {
  const node = el("i", { class: colour ? "swatch" : "swatch ramp" });
  if (colour) node.style.background = colour;
  return node;
}

const typeColour = (name) => (state.types.find((t) => t.name === name) || {}).colour || null;

function toast(message, kind = "error") {
  const box = $("toast");
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), 6000);
}

/* ---------- talking to the server ---------- */

function headers() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { "X-API-Key": key } : {};
}

let keyPrompt = null;
/** Asks for the API key once (concurrent 401s share one dialog); resolves when one was entered. */
function askForKey(rejected) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("api-key-dialog");
  const error = $("api-key-error");
  error.hidden = !rejected;
  error.textContent = rejected ? "The server rejected this key." : "";
  $("api-key-input").value = "";
  keyPrompt = new Promise((resolve) => {
    $("api-key-form").onsubmit = (event) => {
      event.preventDefault();
      const key = $("api-key-input").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      dialog.close();
      keyPrompt = null;
      $("forget-key").hidden = false;
      resolve();
    };
  });
  if (!dialog.open) dialog.showModal();
  return keyPrompt;
}

/** fetch() with the key; on 401 asks for a (new) key and tries again. ``options``: fetch's options, made anew for
 * every try (a form body can be sent once only). */
async function call(url, options = () => ({})) {
  for (;;) {
    const response = await fetch(url, { ...options(), headers: headers() });
    if (response.status !== 401) return response;
    await askForKey(Boolean(sessionStorage.getItem(KEY_STORE)));
  }
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${response.status}: ${body.error}`;
  } catch (_) {
    /* not JSON */
  }
  return `${response.status} ${response.statusText}`;
}

/* ---------- model info, thresholds, layers ---------- */

/** GET info; while the server answers 503 (the model still loading) it asks again every 2 s. */
async function loadInfo() {
  let response = await call("info");
  while (response.status === 503) {
    $("model-name").textContent = "loading…";
    await new Promise((resolve) => setTimeout(resolve, 2000));
    response = await call("info");
  }
  if (!response.ok) throw new Error(`info: ${await errorText(response)}`);
  const info = await response.json();
  state.info = info;
  state.types = info.types.map((t) => ({
    name: t.name,
    col: t.column,
    colour: t.colour,
    rgb: hexToRgb(t.colour),
  }));
  state.calibrated = { ...info.thresholds };
  state.thresholds = { ...info.thresholds };
  state.layers = { [ANY]: false };
  for (const t of state.types) state.layers[t.name] = true;
  for (const name of thresholdNames()) state.range[name] = niceCeil(2 * (state.calibrated[name] || 0.5));
  renderHeader();
  renderLayerToggles();
  renderThresholds();
  renderTableHead();
  renderFilters();
  document.body.dataset.ready = "true";
}

const thresholdNames = () => [...state.types.map((t) => t.name), ANY];
const thresholdLabel = (name) => (name === ANY ? "any defect" : name);
const thresholdId = (name) => `threshold-${columnName(name)}`;

function niceCeil(x) {
  if (!(x > 0) || !Number.isFinite(x)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function renderHeader() {
  const { info } = state;
  $("model-name").textContent = info.model;
  $("engine").textContent = info.engine;
  $("image-size").textContent = `${info.image_size} px`;
  const ckpt = info.checkpoint || {};
  const file = String(ckpt.path || "").split("/").pop();
  $("model-name").title = `${file} · sha256 ${String(ckpt.sha256 || "").slice(0, 12)}…`;
  $("type-chips").replaceChildren(
    ...state.types.map((t) => el("li", { class: "chip", "data-type": t.name }, swatch(t.colour), t.name)),
  );
  const metrics = info.test_metrics || {};
  const number = (group, key) => {
    const value = metrics[group] && metrics[group][key];
    return typeof value === "number" ? value : null;
  };
  const headline = [
    number("any_defect", "i_auroc") === null ? null : `I-AUROC ${number("any_defect", "i_auroc").toFixed(3)}`,
    number("type_classification", "accuracy") === null
      ? null
      : `type acc. ${number("type_classification", "accuracy").toFixed(3)}`,
  ].filter(Boolean);
  $("test-fact").hidden = !headline.length;
  $("test-metric").textContent = headline.join(" · ");
  const rows = [
    ["checkpoint", ckpt.path],
    ["sha256", ckpt.sha256],
    ["image score", info.score],
    ["type rule", info.type_rule],
    ["max upload", info.max_bytes ? `${(info.max_bytes / 2 ** 20).toFixed(1)} MiB` : null],
    ["max pixels", info.max_pixels ? info.max_pixels.toLocaleString("en") : null],
    ["test metrics", info.test_metrics ? null : "none stored for this checkpoint (its run tested another, or none)"],
  ];
  $("model-kv").replaceChildren(
    ...rows
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { class: "mono", text: String(v) })]),
  );
  $("model-metrics").replaceChildren(...metricsTable(info.test_metrics));
  $("forget-key").hidden = !sessionStorage.getItem(KEY_STORE);
}

const METRICS = [
  ["i_auroc", "I-AUROC"],
  ["ap", "AP"],
  ["p_auroc", "P-AUROC"],
  ["aupro", "AUPRO"],
];
/** The test metrics stored with the checkpoint (the run's results.json) as a small table: any defect, the mean
 * and each type (rows) by the metrics of METRICS that it has (columns); nothing when there are none. */
function metricsTable(metrics) {
  if (!metrics || typeof metrics !== "object") return [];
  const rows = [["any defect", metrics.any_defect], ["mean", metrics.mean], ...Object.entries(metrics.types || {})]
    .filter(([, v]) => v && typeof v === "object");
  const columns = METRICS.filter(([key]) => rows.some(([, v]) => typeof v[key] === "number"));
  if (!rows.length || !columns.length) return [];
  const labels = columns.map(([, label]) => el("th", { class: "num", text: label }));
  const head = el("tr", {}, el("th", { text: "test" }), ...labels);
  const body = rows.map(([name, values]) =>
    el(
      "tr",
      {},
      el("td", { title: name }, swatch(name === "any defect" ? null : typeColour(name) || "transparent"), name),
      ...columns.map(([key]) =>
        el("td", { class: "num mono", text: typeof values[key] === "number" ? values[key].toFixed(3) : "–" }),
      ),
    ),
  );
  return [el("table", { class: "metrics" }, el("thead", {}, head), el("tbody", {}, ...body))];
}

function renderLayerToggles() {
  const list = $("layer-toggles");
  const row = (name, label, square) =>
    el(
      "li",
      {},
      el(
        "label",
        { class: "toggle" },
        el("input", {
          type: "checkbox",
          class: "layer-toggle",
          id: `layer-${columnName(name)}`,
          "data-layer": name,
          checked: state.layers[name],
          onchange: (event) => {
            state.layers[name] = event.target.checked;
            redrawAll();
          },
        }),
        square,
        label,
      ),
    );
  list.replaceChildren(
    row(ANY, "any defect", swatch(null)),
    ...state.types.map((t) => row(t.name, t.name, swatch(t.colour))),
  );
}

function renderThresholds() {
  const box = $("thresholds");
  box.replaceChildren(
    ...thresholdNames().map((name) => {
      const id = thresholdId(name);
      const range = el("input", {
        type: "range",
        class: "threshold-range",
        id,
        "data-threshold": name,
        min: "0",
        oninput: (event) => setThreshold(name, parseFloat(event.target.value)),
      });
      const number = el("input", {
        type: "number",
        class: "threshold-value mono",
        id: `${id}-value`,
        "data-threshold": name,
        step: "any",
        min: "0",
        onchange: (event) => {
          const v = parseFloat(event.target.value);
          setThreshold(name, Number.isFinite(v) ? v : state.calibrated[name]);
        },
      });
      return el(
        "div",
        { class: "threshold", "data-threshold": name },
        swatch(typeColour(name)),
        el("span", { class: "tname", text: thresholdLabel(name), title: thresholdLabel(name) }),
        el("span", { class: "track" }, range, el("span", { class: "tick", "data-tick": name, title: "calibrated" })),
        number,
      );
    }),
  );
  syncThresholdInputs();
}

/** Slider range, positions, numbers and calibrated ticks from the state. */
function syncThresholdInputs() {
  for (const name of thresholdNames()) {
    const id = thresholdId(name);
    const range = $(id);
    const max = state.range[name];
    range.max = String(max);
    range.step = String(max / 1000);
    const value = state.thresholds[name];
    range.value = String(value === null ? max : value);
    const number = $(`${id}-value`);
    if (document.activeElement !== number) number.value = value === null ? "" : String(+value.toPrecision(5));
    number.placeholder = "none";
    const tick = document.querySelector(`[data-tick="${CSS.escape(name)}"]`);
    const cal = state.calibrated[name];
    tick.hidden = cal === null;
    if (cal !== null) tick.style.setProperty("--at", Math.min(1, cal / max));
    range.closest(".threshold").dataset.moved = String(value !== cal);
  }
  $("reset-thresholds").disabled = thresholdNames().every((n) => state.thresholds[n] === state.calibrated[n]);
}

function setThreshold(name, value) {
  const anyMoved = name === ANY && state.thresholds[ANY] !== value;
  state.thresholds[name] = value;
  syncThresholdInputs();
  redecideAll(anyMoved);
}

function resetThresholds() {
  const anyMoved = state.thresholds[ANY] !== state.calibrated[ANY];
  state.thresholds = { ...state.calibrated };
  syncThresholdInputs();
  redecideAll(anyMoved);
}

/** Widens the slider ranges so that every score shown fits (thresholds keep their values). */
function fitRanges() {
  let changed = false;
  for (const name of thresholdNames()) {
    let top = 2 * (state.calibrated[name] || 0);
    for (const item of state.items) if (item.record) top = Math.max(top, 1.1 * scoreOf(item, name));
    const max = niceCeil(top || 1);
    if (max > state.range[name]) {
      state.range[name] = max;
      changed = true;
    }
  }
  if (changed) syncThresholdInputs();
  return changed;
}

/* ---------- decisions ---------- */

const scoreOf = (item, name) =>
  name === ANY ? item.record.anomaly_score : item.record[`score_${columnName(name)}`];

/** The record at the current thresholds: decisions, anomalous and predicted type. */
function decide(item) {
  const decided = {};
  for (const t of state.types) {
    const thr = state.thresholds[t.name];
    decided[t.name] = thr !== null && thr !== undefined && scoreOf(item, t.name) >= thr;
  }
  const anyThr = state.thresholds[ANY];
  const anomalous = anyThr !== null && anyThr !== undefined && item.record.anomaly_score >= anyThr;
  let predicted = item.record.predicted_type;
  const moved = state.types.some((t) => state.thresholds[t.name] !== state.calibrated[t.name]);
  if (moved && state.info.type_rule === "calibrated") {
    let best = -Infinity;
    for (const t of state.types) {
      const thr = state.thresholds[t.name];
      const usable = thr !== null && thr > 0 && Number.isFinite(thr);
      const s = usable ? scoreOf(item, t.name) / thr : scoreOf(item, t.name);
      if (s > best) [best, predicted] = [s, t.name];
    }
  }
  item.decided = decided;
  item.anomalous = anomalous;
  item.predicted = predicted;
}

/** The item as predict's CSV row, at the current thresholds, in recordColumns() order. */
function csvRow(item) {
  const r = item.record;
  const values = { path: r.path, anomaly_score: r.anomaly_score, anomalous: item.anomalous ? "1" : "0",
    predicted_type: item.predicted };
  for (const t of state.types) {
    values[`score_${t.col}`] = scoreOf(item, t.name);
    values[`decision_${t.col}`] = item.decided[t.name] ? "1" : "0";
  }
  return recordColumns().map((c) => {
    if (!(c in values)) throw new Error(`the page does not know predict's CSV column ${c}`);
    return values[c];
  });
}

/** Every image at the current thresholds (anyMoved: its any-defect outline drawn again too). */
function redecideAll(anyMoved = false) {
  for (const item of state.items) if (item.status === "done") {
    decide(item);
    if (anyMoved && item.anyGray) paintAnyDefect(item);
    updateCard(item);
  }
  renderTable();
}

/* ---------- images: queue, requests ---------- */

function addFiles(files) {
  if (!state.info) return;
  for (const file of files) {
    const item = { id: state.items.length + 1, order: state.items.length, file, name: file.name, status: "queued" };
    state.items.push(item);
    state.queue.push(item);
    buildCard(item);
  }
  pump();
  renderTable();
}

function pump() {
  while (state.running < IN_FLIGHT && state.queue.length) {
    const item = state.queue.shift();
    state.running += 1;
    item.status = "running";
    updateCard(item);
    predict(item).finally(() => {
      state.running -= 1;
      pump();
      renderTable();
    });
  }
  updateQueueStatus();
}

async function predict(item) {
  const started = performance.now();
  try {
    const form = () => {
      const body = new FormData();
      body.append("image", item.file, item.file.name);
      body.append("heatmaps", "true");
      return { method: "POST", body };
    };
    const response = await call("predict?heatmaps=true", form);
    if (!response.ok) throw new Error(await errorText(response));
    const answer = await response.json();
    item.roundtrip = performance.now() - started;
    item.serverMs = answer.server_ms;
    await decodeLayers(item, answer);
    const { image, heatmaps, ...record } = answer; // the PNGs live on as canvases
    item.record = record;
    item.status = "done";
    decide(item);
    if (fitRanges()) for (const other of state.items) if (other.record && other !== item) updateCard(other);
  } catch (error) {
    item.status = "error";
    item.error = error.message || String(error);
  }
  updateCard(item);
}

function updateQueueStatus() {
  const done = state.items.filter((i) => i.status === "done").length;
  const failed = state.items.filter((i) => i.status === "error").length;
  const waiting = state.items.length - done - failed;
  const parts = [`${done} of ${state.items.length} done`];
  if (waiting) parts.push(`${waiting} waiting`);
  if (failed) parts.push(`${failed} failed`);
  $("queue-status").textContent = state.items.length ? parts.join(" · ") : "no images";
  $("queue-status").dataset.pending = String(waiting);
  $("clear-images").disabled = !state.items.length || waiting > 0;
}

function clearImages() {
  state.items = [];
  $("cards").replaceChildren();
  renderTable();
  updateQueueStatus();
}

/* ---------- heatmaps -> overlay layers ---------- */

async function grayPixels(base64, size) {
  const image = new Image();
  image.src = `data:image/png;base64,${base64}`;
  await image.decode();
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, 0, 0, size, size);
  const rgba = ctx.getImageData(0, 0, size, size).data;
  const gray = new Uint8ClampedArray(size * size);
  for (let i = 0; i < gray.length; i += 1) gray[i] = rgba[4 * i];
  return gray;
}

/** A 256-entry RGB ramp for the any-defect map (dark violet -> red -> yellow; 128, the threshold, is orange-red). */
const RAMP = (() => {
  const stops = [[0, 40, 11, 84], [0.35, 120, 28, 109], [0.5, 222, 73, 58], [0.75, 249, 142, 9], [1, 252, 255, 164]];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v += 1) {
    const t = v / 255;
    let k = 0;
    while (k < stops.length - 2 && t > stops[k + 1][0]) k += 1;
    const [t0, ...a] = stops[k];
    const [t1, ...b] = stops[k + 1];
    const f = Math.min(1, Math.max(0, (t - t0) / (t1 - t0)));
    for (let c = 0; c < 3; c += 1) lut[3 * v + c] = a[c] + f * (b[c] - a[c]);
  }
  return lut;
})();

function layerCanvas(size, gray, paint) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(size, size);
  for (let i = 0; i < gray.length; i += 1) paint(data.data, 4 * i, gray[i], i);
  ctx.putImageData(data, 0, 0);
  return canvas;
}

async function decodeLayers(item, answer) {
  const size = state.info.image_size;
  const image = new Image();
  image.src = `data:image/png;base64,${answer.image}`;
  await image.decode();
  item.image = image;
  item.layers = {};
  const maps = answer.heatmaps || {};
  for (const t of state.types) {
    if (!maps[t.name]) continue;
    const gray = await grayPixels(maps[t.name], size);
    const [r, g, b] = t.rgb;
    item.layers[t.name] = layerCanvas(size, gray, (px, o, v) => {
      px[o] = r;
      px[o + 1] = g;
      px[o + 2] = b;
      px[o + 3] = v;
    });
    item.layers[t.name].peak = gray.reduce((a, b) => Math.max(a, b), 0);
  }
  if (maps[ANY]) {
    item.anyGray = await grayPixels(maps[ANY], size);
    paintAnyDefect(item);
  }
}

/** The gray level of the any-defect PNG at the current any-defect threshold: the server writes map / threshold / 2
 * (128 = the calibrated threshold), so the level scales with the current / calibrated ratio; null: no outline. */
function anyDefectLevel() {
  const current = state.thresholds[ANY];
  const calibrated = state.calibrated[ANY];
  if (current === null || calibrated === null || !(calibrated > 0)) return null;
  return (127.5 * current) / calibrated;
}

/** The any-defect layer: the map on a dark violet -> yellow ramp, the region at or above the current any-defect
 * threshold outlined in white. */
function paintAnyDefect(item) {
  const gray = item.anyGray;
  const size = state.info.image_size;
  const level = anyDefectLevel();
  const above = (x, y) => level !== null && x >= 0 && y >= 0 && x < size && y < size && gray[y * size + x] >= level;
  item.layers[ANY] = layerCanvas(size, gray, (px, o, v, i) => {
    const [x, y] = [i % size, Math.floor(i / size)];
    if (above(x, y) && !(above(x - 1, y) && above(x + 1, y) && above(x, y - 1) && above(x, y + 1))) {
      px[o] = px[o + 1] = px[o + 2] = px[o + 3] = 255;
      return;
    }
    px[o] = RAMP[3 * v];
    px[o + 1] = RAMP[3 * v + 1];
    px[o + 2] = RAMP[3 * v + 2];
    px[o + 3] = Math.min(255, v * 1.6);
  });
}

/* ---------- cards ---------- */

function buildCard(item) {
  const size = state.info.image_size;
  const main = el("canvas", { class: "main-view", width: size, height: size, "data-layers": "" });
  const scores = el("div", { class: "scores" });
  const strip = el("div", { class: "strip" });
  item.card = el(
    "article",
    { class: "card", "data-item": String(item.id), "data-status": item.status, "data-path": item.name },
    el(
      "header",
      {},
      el("span", { class: "index mono", text: `#${item.id}` }),
      el("span", { class: "name", text: item.name, title: item.name }),
      el("span", { class: "badge", "data-role": "badge" }),
    ),
    el("div", { class: "card-body" }, el("div", { class: "view" }, main), scores),
    strip,
    el("footer", { class: "muted small mono", "data-role": "timing" }),
  );
  item.main = main;
  item.scores = scores;
  item.strip = strip;
  $("cards").append(item.card);
}

function updateCard(item) {
  const card = item.card;
  if (!card) return;
  card.dataset.status = item.status;
  const badge = card.querySelector('[data-role="badge"]');
  if (item.status !== "done") {
    badge.className = `badge ${item.status}`;
    badge.textContent = item.status === "error" ? "error" : item.status === "running" ? "running…" : "queued";
    const error = item.status === "error";
    const waiting = error ? el("p", { class: "error", text: item.error }) : el("div", { class: "spinner" });
    item.scores.replaceChildren(waiting);
    updateQueueStatus();
    return;
  }
  card.dataset.anomalous = String(item.anomalous);
  card.dataset.predicted = item.predicted;
  badge.className = `badge ${item.anomalous ? "defect" : "ok"}`;
  badge.textContent = item.anomalous ? `defect · ${item.predicted}` : "OK";
  const type = state.types.find((t) => t.name === item.predicted);
  badge.style.setProperty("--type", item.anomalous && type ? type.colour : "");
  renderScores(item);
  if (!item.strip.childElementCount) buildStrip(item);
  drawMain(item);
  drawStrip(item);
  card.querySelector('[data-role="timing"]').textContent =
    `server ${short(item.serverMs)} ms · round trip ${Math.round(item.roundtrip)} ms`;
  updateQueueStatus();
}

function scoreRow(item, name, colour, label) {
  const score = scoreOf(item, name);
  const thr = state.thresholds[name];
  const max = state.range[name];
  const decided = name === ANY ? item.anomalous : item.decided[name];
  const fill = el("span", { class: "fill" });
  fill.style.width = `${Math.min(100, (100 * score) / max)}%`;
  fill.style.background = colour || "";
  const bar = el("span", { class: "bar" }, fill);
  if (thr !== null) {
    const mark = el("span", { class: "mark", title: `threshold ${short(thr)}` });
    mark.style.left = `${Math.min(100, (100 * thr) / max)}%`;
    bar.append(mark);
  }
  return el(
    "div",
    {
      class: `score${decided ? " decided" : ""}${name === ANY ? " any" : ""}`,
      "data-score": name,
      "data-decided": String(decided),
    },
    el("span", { class: "label", text: label, title: label }),
    bar,
    el("span", { class: "value mono", text: short(score) }),
    el("span", { class: "vs mono muted", text: `/ ${short(thr)}` }),
  );
}

function renderScores(item) {
  item.scores.replaceChildren(
    scoreRow(item, ANY, null, "any defect"),
    ...state.types.map((t) => scoreRow(item, t.name, t.colour, t.name)),
  );
}

function visibleLayers() {
  return [ANY, ...state.types.map((t) => t.name)].filter((name) => state.layers[name]);
}

function compose(canvas, item, layers) {
  const ctx = canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.drawImage(item.image, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = state.opacity;
  for (const name of layers) if (item.layers[name]) ctx.drawImage(item.layers[name], 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 1;
}

/** The main view: the image under the layers toggled on, or under the one layer its thumbnail picked (solo). */
function drawMain(item) {
  const layers = item.solo ? [item.solo] : visibleLayers();
  compose(item.main, item, layers);
  item.main.dataset.layers = layers.join(",");
}

function buildStrip(item) {
  const size = state.info.image_size;
  const panels = [[ANY, "any"], ...state.types.map((t) => [t.name, t.name])];
  item.thumbs = {};
  item.strip.style.setProperty("--panels", panels.length);
  item.strip.replaceChildren(
    ...panels.map(([name, label]) => {
      const canvas = el("canvas", { width: size, height: size });
      item.thumbs[name] = canvas;
      const caption = el("figcaption", {}, swatch(typeColour(name)), label);
      const title = `${label} alone in the view (click)`;
      const figure = el("figure", { class: "thumb", "data-layer": name, title }, canvas, caption);
      figure.onclick = () => {
        item.solo = item.solo === name ? null : name;
        for (const thumb of item.strip.children) thumb.classList.toggle("active", thumb.dataset.layer === item.solo);
        drawMain(item);
      };
      return figure;
    }),
  );
}

function drawStrip(item) {
  for (const [name, canvas] of Object.entries(item.thumbs || {})) {
    compose(canvas, item, [name]);
    canvas.parentElement.dataset.decided = String(name === ANY ? item.anomalous : item.decided[name]);
  }
}

function redrawAll() {
  for (const item of state.items) if (item.status === "done") {
    drawMain(item);
    drawStrip(item);
  }
}

/* ---------- table ---------- */

function tableColumns() {
  return [
    { key: "order", label: "#", num: true },
    { key: "path", label: "image" },
    { key: "anomalous", label: "decision · type" },
    { key: "anomaly_score", label: "any defect", num: true, score: ANY },
    ...state.types.map((t) => ({ key: `score_${t.col}`, label: t.name, num: true, score: t.name, colour: t.colour })),
  ];
}

function renderTableHead() {
  $("results-head").replaceChildren(
    ...tableColumns().map((c) => {
      const th = el("th", { "data-sort": c.key, class: `${c.num ? "num" : ""}${c.score ? " score-col" : ""}` });
      th.title = `sort by ${c.label}`;
      // a long score label may wrap after its first word (the swatch stays with it)
      const [, first, rest] = c.label.match(/^([^_ ]*[_ ]?)(.*)$/);
      const square = c.score && c.score !== ANY ? swatch(c.colour) : null;
      th.append(el("span", { class: "nowrap" }, square, first), rest && `\u200b${rest}`);
      th.onclick = () => {
        const initial = (c.num && c.key !== "order") || c.key === "anomalous" ? -1 : 1; // scores, defects first
        state.sort = state.sort.key === c.key ? { key: c.key, dir: -state.sort.dir } : { key: c.key, dir: initial };
        renderTable();
      };
      return th;
    }),
  );
}

function renderFilters() {
  const select = $("filter-type");
  select.replaceChildren(
    el("option", { value: "all", text: "any" }),
    ...state.types.map((t) => el("option", { value: t.name, text: `flagged: ${t.name}` })),
  );
}

function sortValue(item, key) {
  if (key === "order") return item.order;
  if (key === "path") return item.name.toLowerCase();
  if (!item.record) return null;
  if (key === "anomalous") return `${item.anomalous ? 1 : 0} ${item.predicted}`; // defective first, then by type
  return item.record[key];
}

function shownItems() {
  const { decision, type } = state.filter;
  const keep = (item) => {
    if (decision !== "all" || type !== "all") {
      if (item.status !== "done") return false;
      if (decision === "defective" && !item.anomalous) return false;
      if (decision === "ok" && item.anomalous) return false;
      if (type !== "all" && !item.decided[type]) return false;
    }
    return true;
  };
  const { key, dir } = state.sort;
  return state.items.filter(keep).sort((a, b) => {
    const va = sortValue(a, key);
    const vb = sortValue(b, key);
    if (va === vb) return a.order - b.order;
    if (va === null) return 1;
    if (vb === null) return -1;
    return (va < vb ? -1 : 1) * dir;
  });
}

/** One cell of the table: column ``c`` of ``item`` (scores: the cell of a decided type is marked). */
function tableCell(item, c) {
  if (c.key === "order") return el("td", { class: "num muted", text: String(item.id) });
  if (c.key === "path") return el("td", { class: "path", text: item.name, title: item.name });
  if (item.status !== "done") {
    const text = c.key !== "anomalous" ? "" : item.status === "error" ? "error" : "…";
    return el("td", { class: item.status === "error" ? "error" : "muted", text, title: item.error });
  }
  if (c.key === "anomalous") {
    // a defect names its predicted type; an OK image's predicted type means nothing (it stays in the CSV)
    const pill = item.anomalous
      ? el("span", { class: "pill defect" }, swatch(typeColour(item.predicted)), item.predicted)
      : el("span", { class: "pill ok", text: "OK" });
    return el("td", { class: "decision", title: item.anomalous ? `defect: ${item.predicted}` : "OK" }, pill);
  }
  const decided = c.score === ANY ? item.anomalous : item.decided[c.score];
  const td = el("td", {
    class: `num mono${decided ? " decided" : ""}`,
    "data-col": c.key,
    "data-decided": String(decided),
    text: short(item.record[c.key]),
  });
  if (decided && c.colour) td.style.setProperty("--type", c.colour);
  return td;
}

function renderTable() {
  for (const th of $("results-head").children) {
    const active = th.dataset.sort === state.sort.key;
    th.setAttribute("aria-sort", active ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
  const shown = shownItems();
  const columns = tableColumns();
  $("results-body").replaceChildren(
    ...shown.map((item) => {
      const done = item.status === "done";
      const tr = el("tr", {
        "data-item": String(item.id),
        "data-path": item.name,
        "data-status": item.status,
        "data-anomalous": done ? String(item.anomalous) : null,
        "data-predicted": done ? item.predicted : null,
      });
      tr.onclick = () => focusCard(item);
      tr.append(...columns.map((c) => tableCell(item, c)));
      return tr;
    }),
  );
  // the cards follow the table: same order, same filter
  const cards = $("cards");
  const shownIds = new Set(shown.map((i) => i.id));
  for (const item of state.items) if (item.card) item.card.hidden = !shownIds.has(item.id);
  for (const item of shown) if (item.card) cards.append(item.card);
  renderSummary(shown);
}

function renderSummary(shown) {
  const done = state.items.filter((i) => i.status === "done");
  const defective = done.filter((i) => i.anomalous).length;
  const csvRows = shown.filter((i) => i.status === "done").length;
  const button = $("download-csv");
  button.disabled = csvRows === 0;
  button.textContent = `CSV · ${csvRows} row${csvRows === 1 ? "" : "s"}`;
  button.dataset.rows = String(csvRows);
  const summary = $("summary");
  summary.dataset.done = String(done.length);
  summary.dataset.defective = String(defective);
  if (!state.items.length) {
    summary.textContent = "Load images to inspect them.";
    return;
  }
  const perType = state.types.map((t) => {
    const n = done.filter((i) => i.decided[t.name]).length;
    return el("span", { class: "count-chip", "data-type": t.name }, swatch(t.colour), `${t.name} ${n}`);
  });
  summary.replaceChildren(
    el("strong", { text: `${done.length}` }),
    ` image${done.length === 1 ? "" : "s"} · `,
    el("strong", { class: "defect-text", text: `${defective}` }),
    " defective · ",
    el("strong", { class: "ok-text", text: `${done.length - defective}` }),
    " OK ",
    el("span", { class: "per-type" }, ...perType),
  );
}

function focusCard(item) {
  if (!item.card) return;
  item.card.scrollIntoView({ behavior: "smooth", block: "center" });
  item.card.classList.remove("flash");
  void item.card.offsetWidth;
  item.card.classList.add("flash");
}

/** The rows shown in the table (order and filter included) as predict's predictions.csv. */
function csvText() {
  const lines = [recordColumns(), ...shownItems().filter((i) => i.status === "done").map(csvRow)];
  return lines.map((line) => line.map(csvField).join(",") + "\r\n").join("");
}

function downloadCsv() {
  const blob = new Blob([csvText()], { type: "text/csv" });
  const link = el("a", { href: URL.createObjectURL(blob), download: "predictions.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/* ---------- wiring ---------- */

function wire() {
  $("file-input").addEventListener("change", (event) => {
    addFiles([...event.target.files]);
    event.target.value = "";
  });
  const zone = $("drop-zone");
  const over = (on) => (event) => {
    event.preventDefault();
    zone.classList.toggle("over", on);
  };
  window.addEventListener("dragover", over(true));
  window.addEventListener("dragleave", over(false));
  window.addEventListener("drop", (event) => {
    over(false)(event);
    addFiles([...event.dataTransfer.files].filter((f) => /^image\//.test(f.type) || /\.(tiff?|bmp)$/i.test(f.name)));
  });
  $("opacity").addEventListener("input", (event) => {
    state.opacity = parseFloat(event.target.value);
    $("opacity-value").textContent = state.opacity.toFixed(2);
    redrawAll();
  });
  $("reset-thresholds").addEventListener("click", resetThresholds);
  $("filter-decision").addEventListener("change", (event) => {
    state.filter.decision = event.target.value;
    renderTable();
  });
  $("filter-type").addEventListener("change", (event) => {
    state.filter.type = event.target.value;
    renderTable();
  });
  $("download-csv").addEventListener("click", downloadCsv);
  $("clear-images").addEventListener("click", clearImages);
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    location.reload();
  });
}

window.mtfcdd = { state, pyFloat };

wire();
loadInfo().catch((error) => {
  document.body.dataset.ready = "error";
  toast(`Cannot reach the model server: ${error.message}`);
});
