// The explorer's page: controls, the plots (SVG, drawn here), the readout table and the URL.
//
// Every element with the class vg-explorer becomes an explorer. The one with the id explorer
// (the explorer page) keeps its settings in the URL hash,
//   #activation=relu&init=he_normal&gain=1&depth=60&width=64&batch=32&trials=8&seed=1&batchnorm=0&residual=0
// (then loss=random and hide=name,name when they are given), so that a link reproduces a view
// and a teacher can hide controls; an embed on another page starts from its data-state, in the
// same form, without the presets, and links to the explorer page at its current settings
// (embed.js loads it on the reader's request). The networks run in Web Workers (worker.js), a
// share of the trials each.

import { ACTIVATIONS, INITIALIZERS, quantile } from "./engine.js";
import { DEFAULTS } from "./simulate.js";
import { initSigmaW2, predictedLog10GradNorms } from "./theory.js";

const ORDER = ["activation", "init", "gain", "depth", "width", "batch", "trials", "seed", "batchnorm", "residual"];
const RANGES = {
  gain: [0.001, 100],
  depth: [1, 200],
  // The largest settings keep a worker's memory near 100 MB (weights, their transposes and
  // every layer's values for one network of 200 layers of 128 by a batch of 64).
  width: [2, 128],
  batch: [2, 64],
  trials: [1, 32],
  seed: [0, 2 ** 31 - 1],
};
const RESIDUALS = {
  0: "none",
  // Short enough for the select box at phone width; the residual page cites both blocks.
  1: "identity: h + phi(z)",
  post: "after the sum: phi(h + z)",
};
const LOSSES = { sum: "sum of the outputs (ones)", random: "random (standard normal, scaled)" };
const EXPLORER_PAGE = new URL("../../explorer/", import.meta.url);

export const PRESETS = [
  { label: "60 ReLU layers, Glorot", state: { activation: "relu", init: "xavier_normal" } },
  { label: "60 ReLU layers, He", state: { activation: "relu", init: "he_normal" } },
  { label: "30 sigmoid layers, LeCun", state: { activation: "sigmoid", init: "lecun_normal", depth: 30 } },
  { label: "tanh, pre-2010 uniform", state: { activation: "tanh", init: "legacy_uniform", depth: 30 } },
  { label: "tanh, N(0, 1): exploding", state: { activation: "tanh", init: "normal", gain: 1, depth: 30 } },
  {
    label: "sigmoid with batch norm",
    state: { activation: "sigmoid", init: "normal", gain: 1, depth: 30, batchnorm: 1, loss: "random" },
  },
  { label: "ReLU, residual", state: { activation: "relu", init: "he_normal", residual: "1" } },
];

// --- state <-> text ---

function clampNumber(value, [low, high], integer, fallback) {
  const number = Number(value);
  if (value === "" || value === null || !Number.isFinite(number)) return fallback;
  const clamped = Math.min(high, Math.max(low, number));
  return integer ? Math.round(clamped) : clamped;
}

/** Settings from "key=value&..." text; anything missing or invalid takes its default. */
export function parseState(text, base = DEFAULTS) {
  const params = new URLSearchParams(text.replace(/^#/, ""));
  const s = { ...base, hide: [] };
  const get = (key) => params.get(key);
  if (ACTIVATIONS[get("activation")]) s.activation = get("activation");
  if (INITIALIZERS[get("init")]) s.init = get("init");
  for (const key of ["gain", "depth", "width", "batch", "trials", "seed"]) {
    if (params.has(key)) s[key] = clampNumber(get(key), RANGES[key], key !== "gain", s[key]);
  }
  if (params.has("batchnorm")) s.batchnorm = get("batchnorm") === "1" ? 1 : 0;
  if (get("residual") in RESIDUALS) s.residual = get("residual");
  if (get("loss") in LOSSES) s.loss = get("loss");
  if (params.has("hide")) s.hide = get("hide").split(",").filter((name) => name);
  return s;
}

/** The URL hash for settings: the ten keys in the order, then loss and hide if set. */
export function formatState(s) {
  const parts = ORDER.map((key) => `${key}=${s[key]}`);
  if (s.loss !== "sum") parts.push(`loss=${s.loss}`);
  if (s.hide && s.hide.length) parts.push(`hide=${s.hide.join(",")}`);
  return parts.join("&");
}

// --- the workers ---

class Pool {
  constructor() {
    this.workers = [];
    this.id = 0;
    const cores = navigator.hardwareConcurrency || 2;
    this.size = Math.max(1, Math.min(4, cores));
  }

  worker(index) {
    if (!this.workers[index]) {
      const url = new URL("./worker.js", import.meta.url);
      this.workers[index] = new Worker(url, { type: "module" });
    }
    return this.workers[index];
  }

  /** Run every trial of `settings`; resolves with the trials' results, or null if superseded. */
  run(settings, onProgress) {
    if (this.cancel) this.cancel();
    // A worker still busy with an older job that has run for a while is ended: it would
    // finish that job before this one. (A short job is let finish: its worker keeps its draws.)
    const now = performance.now();
    this.busy = this.busy || [];
    this.busy.forEach((since, part) => {
      if (since !== null && now - since > 100) {
        this.workers[part].terminate();
        this.workers[part] = null;
        this.busy[part] = null;
      }
    });
    const id = ++this.id;
    const parts = Math.min(this.size, settings.trials);
    const results = new Array(settings.trials);
    let pending = parts;
    const done = new Array(parts).fill(0);
    this.computeMs = 0; // the slowest worker's own time, for the record
    return new Promise((resolve) => {
      for (let part = 0; part < parts; part++) {
        const from = Math.floor((part * settings.trials) / parts);
        const to = Math.floor(((part + 1) * settings.trials) / parts);
        const worker = this.worker(part);
        this.busy[part] = performance.now();
        worker.onmessage = ({ data }) => {
          if (data.type === "result") this.busy[part] = null;
          if (data.id !== this.id) return;
          if (data.type === "progress") {
            done[part] = data.done;
            onProgress(done.reduce((a, b) => a + b, 0), settings.trials);
            return;
          }
          data.results.forEach((result, index) => (results[data.from + index] = result));
          this.computeMs = Math.max(this.computeMs, data.ms);
          if (--pending === 0) resolve(results);
        };
        worker.onerror = (error) => {
          // A worker that failed (out of memory, say) is replaced at the next run.
          error.preventDefault();
          worker.terminate();
          this.workers[part] = null;
          onProgress(-1, settings.trials);
          resolve(null);
        };
        worker.postMessage({ id, settings: { ...settings, hide: undefined }, from, to });
      }
      // A newer run supersedes this one: resolve null when it starts.
      this.cancel = () => resolve(null);
    });
  }
}

const pool = typeof Worker === "undefined" ? null : new Pool();

// --- summaries ---

/** Per layer: the median and quartiles over the trials of one measured array. */
export function summarise(results, key) {
  const layers = results[0][key].length;
  const median = new Float64Array(layers);
  const lower = new Float64Array(layers);
  const upper = new Float64Array(layers);
  const column = new Float64Array(results.length);
  for (let l = 0; l < layers; l++) {
    results.forEach((r, t) => (column[t] = r[key][l]));
    median[l] = quantile(column, 0.5);
    lower[l] = quantile(column, 0.25);
    upper[l] = quantile(column, 0.75);
  }
  return { median, lower, upper };
}

function theoryApplies(s) {
  return !s.batchnorm && s.residual === "0";
}

// --- drawing ---

const SVG = "http://www.w3.org/2000/svg";

function element(name, attributes = {}, parent = null, namespace = SVG) {
  const node = document.createElementNS(namespace, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function html(name, attributes = {}, parent = null, text = null) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function niceStep(span, most) {
  const raw = span / most;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= raw) return factor * power;
  return 10 * power;
}

const MINUS = "\u2212";
const signed = (value, digits) =>
  value === -Infinity ? `${MINUS}\u221e` : Number.isNaN(value) ? "n/a" : value.toFixed(digits).replace("-", MINUS);

/** A line chart into `svg`: series of {values, from (first layer), kind, band?}. */
function chart(svg, { series, depth, yLabel, log, yMin, yMax }) {
  svg.replaceChildren();
  const width = 640;
  const height = 300;
  const margin = { left: 62, right: 12, top: 12, bottom: 40 };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const finite = [];
  for (const s of series) {
    for (const array of [s.values, s.lower, s.upper]) {
      if (array) for (const v of array) if (Number.isFinite(v)) finite.push(v);
    }
  }
  let low = yMin ?? (finite.length ? Math.min(...finite) : 0);
  let high = yMax ?? (finite.length ? Math.max(...finite) : 1);
  if (log) {
    low = Math.floor(low - 0.05);
    high = Math.ceil(high + 0.05);
  }
  if (high - low < 1e-9) {
    low -= 0.5;
    high += 0.5;
  }
  const x = (l) => margin.left + ((width - margin.left - margin.right) * l) / Math.max(depth, 1);
  const y = (v) => margin.top + ((height - margin.top - margin.bottom) * (high - v)) / (high - low);
  const axes = element("g", { class: "vg-axes" }, svg);
  const yStep = niceStep(high - low, 6) < 1 && log ? 1 : niceStep(high - low, 6);
  for (let v = Math.ceil(low / yStep) * yStep; v <= high + 1e-9; v += yStep) {
    element("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v), class: "vg-grid" }, axes);
    const label = element("text", { x: margin.left - 6, y: y(v) + 4, "text-anchor": "end" }, axes);
    if (log) {
      label.textContent = "10";
      element("tspan", { dy: -7, "font-size": "0.75em" }, label).textContent = signed(Math.round(v), 0);
    } else {
      label.textContent = String(Math.round(v * 100) / 100);
    }
  }
  const xStep = Math.max(1, niceStep(depth, 8));
  for (let l = 0; l <= depth; l += xStep) {
    element("line", { x1: x(l), x2: x(l), y1: height - margin.bottom, y2: height - margin.bottom + 4 }, axes);
    element("text", { x: x(l), y: height - margin.bottom + 16, "text-anchor": "middle" }, axes).textContent = String(l);
  }
  element("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: height - margin.bottom }, axes);
  element("line", { x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom }, axes);
  element("text", { x: (width + margin.left) / 2, y: height - 6, "text-anchor": "middle" }, axes).textContent =
    "layer l (0 is the input x, L the output)";
  const yTitle = element("text", { transform: `translate(14 ${(height - margin.bottom) / 2}) rotate(-90)`, "text-anchor": "middle" }, axes);
  yTitle.textContent = yLabel;
  const clip = `vg-clip-${Math.random().toString(36).slice(2)}`;
  const defs = element("defs", {}, svg);
  const clipPath = element("clipPath", { id: clip }, defs);
  element("rect", { x: margin.left, y: margin.top - 2, width: width - margin.left - margin.right, height: height - margin.top - margin.bottom + 4 }, clipPath);
  const plot = element("g", { "clip-path": `url(#${clip})` }, svg);
  for (const s of series) {
    const points = [];
    s.values.forEach((v, i) => Number.isFinite(v) && points.push([x(i + s.from), y(v)]));
    if (s.lower && s.upper) {
      const top = [];
      const bottom = [];
      s.upper.forEach((v, i) => {
        const lo = s.lower[i];
        if (Number.isFinite(v) && Number.isFinite(lo)) {
          top.push(`${x(i + s.from)},${y(v)}`);
          bottom.unshift(`${x(i + s.from)},${y(lo)}`);
        }
      });
      if (top.length) element("polygon", { points: [...top, ...bottom].join(" "), class: `vg-band vg-${s.kind}` }, plot);
    }
    if (points.length) {
      element("polyline", { points: points.map((p) => p.join(",")).join(" "), class: `vg-line vg-${s.kind}` }, plot);
    }
  }
}

// --- one explorer ---

const CONTROLS = [
  { name: "activation", label: "Activation", type: "select", options: Object.fromEntries(Object.entries(ACTIVATIONS).map(([k, v]) => [k, v.label])) },
  { name: "init", label: "Initialiser", type: "select", options: Object.fromEntries(Object.entries(INITIALIZERS).map(([k, v]) => [k, v.label])) },
  { name: "gain", label: "Gain (for normal: the standard deviation)", type: "number", step: "any" },
  { name: "depth", label: "Depth L (layers)", type: "range" },
  { name: "width", label: "Width (units per layer)", type: "range" },
  { name: "batch", label: "Batch (inputs)", type: "range" },
  { name: "trials", label: "Trials (networks)", type: "range" },
  { name: "seed", label: "Seed", type: "number", step: "1" },
  { name: "batchnorm", label: "Batch normalisation", type: "checkbox" },
  { name: "residual", label: "Residual connections", type: "select", options: RESIDUALS },
  { name: "loss", label: "Loss", type: "select", options: LOSSES },
];

class Explorer {
  constructor(root) {
    this.root = root;
    this.inHash = root.id === "explorer";
    this.prefix = root.id || `vg-explorer-${Math.random().toString(36).slice(2, 8)}`;
    const start = this.inHash && location.hash.length > 1 ? location.hash : root.dataset.state || "";
    this.state = parseState(start);
    this.pool = this.inHash || !pool ? pool : new Pool();
    this.build();
    this.show();
    this.update();
    if (this.inHash) {
      this.onHash = () => {
        if (!this.root.isConnected) return window.removeEventListener("hashchange", this.onHash);
        if (location.hash.length > 1 && location.hash.slice(1) !== formatState(this.state)) {
          this.state = parseState(location.hash);
          this.show();
          this.update();
        }
      };
      window.addEventListener("hashchange", this.onHash);
    }
  }

  build() {
    const root = this.root;
    root.replaceChildren();
    root.classList.add("vg-explorer-ready");
    const form = html("form", { class: "vg-controls", "aria-label": "Network settings" }, root);
    form.addEventListener("submit", (event) => event.preventDefault());
    this.inputs = {};
    this.fields = {};
    for (const control of CONTROLS) {
      const id = `${this.prefix}-${control.name}`;
      const field = html("div", { class: `vg-field vg-field-${control.type}`, "data-control": control.name }, form);
      this.fields[control.name] = field;
      const label = html("label", { for: id }, field, control.label);
      let input;
      if (control.type === "select") {
        input = html("select", { id, name: control.name }, field);
        for (const [value, text] of Object.entries(control.options)) html("option", { value }, input, text);
      } else if (control.type === "checkbox") {
        input = html("input", { id, name: control.name, type: "checkbox" });
        field.insertBefore(input, label);
      } else {
        const [min, max] = RANGES[control.name];
        input = html("input", { id, name: control.name, type: control.type, min, max, step: control.step || "1" }, field);
        if (control.type === "range") {
          const output = html("output", { for: id, id: `${id}-value` }, field);
          this.inputs[`${control.name}-output`] = output;
        }
      }
      this.inputs[control.name] = input;
      input.addEventListener(control.type === "range" || control.type === "number" ? "input" : "change", () => this.read(control.name));
    }
    // An embed shows one page's experiment; the presets are the explorer page's.
    const presets = html("div", { class: "vg-presets", role: "group", "aria-label": "Presets" }, this.inHash ? root : null);
    html("span", {}, presets, "Presets: ");
    for (const preset of this.inHash ? PRESETS : []) {
      const button = html("button", { type: "button", class: "md-button" }, presets, preset.label);
      button.addEventListener("click", () => {
        this.state = { ...parseState(""), ...preset.state, hide: this.state.hide };
        this.show();
        this.update();
      });
    }
    const status = html("p", { class: "vg-status", role: "status", "aria-live": "polite" }, root);
    this.status = status;
    this.progress = html("progress", { max: 1, value: 0, hidden: "" }, root);
    const figure = html("figure", { class: "vg-figure" }, root);
    this.gradSvg = element("svg", { role: "img", class: "vg-chart", "aria-labelledby": `${this.prefix}-grad-caption` }, figure);
    const caption = html("figcaption", { id: `${this.prefix}-grad-caption` }, figure);
    caption.innerHTML =
      '<span class="vg-key vg-grad"></span> median of ||g<sub>l</sub>|| = ||dLoss/dh<sub>l</sub>|| over the trials, ' +
      "the band between the quartiles; " +
      '<span class="vg-key vg-weight"></span> median of ||dLoss/dW<sub>l</sub>||; ' +
      '<span class="vg-key vg-theory"></span> mean-field prediction, from the measured output norm ' +
      "(shown without batch normalisation and residual connections). Log scale.";
    const satFigure = html("figure", { class: "vg-figure vg-figure-small" }, root);
    this.satSvg = element("svg", { role: "img", class: "vg-chart", "aria-labelledby": `${this.prefix}-sat-caption` }, satFigure);
    html("figcaption", { id: `${this.prefix}-sat-caption` }, satFigure,
      "Saturated fraction per layer l = 1..L: the share of units (over the batch) whose slope |phi'(z)| is below 1% of its largest value; median over the trials.");
    const details = html("details", { class: "vg-numbers" }, root);
    html("summary", {}, details, "The numbers (one row per layer)");
    const wrap = html("div", { class: "vg-table-wrap" }, details);
    const table = html("table", { class: "vg-readout" }, wrap);
    if (this.inHash) table.id = "explorer-readout";
    html("caption", {}, table, "log10 of the gradient norm ||g_l|| per layer over the trials, computed live in this page");
    const head = html("tr", {}, html("thead", {}, table));
    for (const title of ["layer l", "median log10 ||g_l||", "lower quartile", "upper quartile"]) html("th", { scope: "col" }, head, title);
    this.body = html("tbody", {}, table);
    const linkRow = html("p", {}, root, this.inHash ? "Link to this view: " : "");
    this.link = html("a", { class: "vg-link" }, linkRow, "");
  }

  show() {
    const s = this.state;
    for (const control of CONTROLS) {
      const input = this.inputs[control.name];
      if (control.type === "checkbox") input.checked = Boolean(s[control.name]);
      else input.value = String(s[control.name]);
      const output = this.inputs[`${control.name}-output`];
      if (output) output.textContent = String(s[control.name]);
      this.fields[control.name].hidden = s.hide.includes(control.name);
    }
  }

  read(name) {
    const input = this.inputs[name];
    const s = { ...this.state };
    if (name === "batchnorm") s.batchnorm = input.checked ? 1 : 0;
    else if (name in RANGES) {
      const value = clampNumber(input.value, RANGES[name], name !== "gain", null);
      if (value === null || (name === "gain" && !(value > 0))) return; // a half-typed number
      s[name] = value;
    } else s[name] = input.value;
    this.state = s;
    const output = this.inputs[`${name}-output`];
    if (output) output.textContent = String(s[name]);
    this.update();
  }

  async update() {
    const s = this.state;
    const text = formatState(s);
    if (this.inHash) history.replaceState(history.state, "", `#${text}`);
    // An embed's link opens the explorer page at the same settings, every control in view.
    this.link.href = this.inHash ? `#${text}` : `${EXPLORER_PAGE.href}#${formatState({ ...s, hide: [] })}`;
    this.link.textContent = this.inHash ? `#${text}` : "open these settings in the explorer";
    const started = performance.now();
    this.root.dataset.busy = "1";
    const slow = setTimeout(() => (this.progress.hidden = false), 150);
    const results = await this.pool.run(s, (done, total) => {
      if (done < 0) {
        this.status.textContent = "The computation failed in this browser; try smaller settings.";
        return;
      }
      this.progress.max = total;
      this.progress.value = done;
      this.status.textContent = `Computing: ${done} of ${total} networks done`;
    });
    clearTimeout(slow);
    if (!results || text !== formatState(this.state)) return; // superseded by a newer setting
    this.progress.hidden = true;
    const rendering = performance.now();
    this.render(s, results);
    const elapsed = performance.now() - started;
    this.root.dataset.computeMs = this.pool.computeMs.toFixed(1);
    this.root.dataset.renderMs = (performance.now() - rendering).toFixed(1);
    this.root.dataset.busy = "0";
    this.root.dataset.state = text;
    this.root.dataset.updateMs = elapsed.toFixed(1);
    // It bubbles: Material's instant navigation may replace the page's explorer (a hash typed
    // into the address bar reloads the content), and a listener on the document hears both.
    const detail = { state: text, ms: elapsed };
    this.root.dispatchEvent(new CustomEvent("explorer-update", { detail, bubbles: true }));
  }

  render(s, results) {
    const grads = summarise(results, "log10GradNorms");
    const weights = summarise(results, "log10WeightGradNorms");
    const saturated = summarise(results, "saturatedFraction");
    const series = [
      { values: weights.median, lower: weights.lower, upper: weights.upper, from: 1, kind: "weight" },
      { values: grads.median, lower: grads.lower, upper: grads.upper, from: 0, kind: "grad" },
    ];
    let theory = null;
    if (theoryApplies(s) && Number.isFinite(grads.median[s.depth])) {
      const relative = predictedLog10GradNorms(s.depth, initSigmaW2(s.init, s.width, s.gain), s.activation);
      theory = relative.map((v) => v + grads.median[s.depth]);
      series.push({ values: theory, from: 0, kind: "theory" });
    }
    chart(this.gradSvg, { series, depth: s.depth, yLabel: "norm (log scale)", log: true });
    chart(this.satSvg, {
      series: [{ values: saturated.median, lower: saturated.lower, upper: saturated.upper, from: 1, kind: "saturated" }],
      depth: s.depth,
      yLabel: "saturated fraction",
      log: false,
      yMin: 0,
      yMax: 1,
    });
    const rows = [];
    for (let l = 0; l <= s.depth; l++) {
      rows.push(`<tr><td>${l}</td><td>${signed(grads.median[l], 3)}</td><td>${signed(grads.lower[l], 3)}</td><td>${signed(grads.upper[l], 3)}</td></tr>`);
    }
    this.body.innerHTML = rows.join("");
    const through = grads.median[0] - grads.median[s.depth];
    const summary = [
      `Computed in this page: from the output to the input, the median gradient norm changed by 10^${signed(through, 1)}`,
      `over ${s.depth} layers (${s.trials} networks of width ${s.width}, batch ${s.batch}).`,
    ];
    if (theory) summary.push(`Mean field predicts 10^${signed(theory[0] - theory[s.depth], 1)}.`);
    const overflowed = results.filter((r) => r.overflowLayer > 0).length;
    if (overflowed) summary.push(`${overflowed} of the networks overflowed in the forward pass: their gradients are not meaningful.`);
    this.status.textContent = summary.join(" ");
  }
}

/** Make every .vg-explorer element of the document that is not one yet an explorer. */
export function mountAll() {
  for (const root of document.querySelectorAll(".vg-explorer:not(.vg-explorer-ready)")) {
    if (!pool) {
      root.textContent = "The explorer needs a browser with Web Workers.";
      continue;
    }
    root.explorer = new Explorer(root);
  }
}

// Material's instant navigation swaps the page without reloading this module: mount on every
// new page it shows, as well as on this one.
if (window.document$ && typeof window.document$.subscribe === "function") window.document$.subscribe(mountAll);
else mountAll();
