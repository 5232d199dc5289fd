// The explorer's engine: vangrad/engine.py's forward and backward passes, in JavaScript.
//
// It follows the reference engine line by line, with the same conventions (layers l = 1..L,
// z_l = h_{l-1} W_l, h_l = phi(z_l), plus h_{l-1} with residual connections; g_l = dLoss/dh_l),
// the same batch normalisation, the same activations and initialisers, and the same log space:
// after every layer the running gradient is divided by the power of two just above its norm,
// so that the log10 norms are exact at any depth. tests/test_explorer.py holds it to vangrad on
// weights vangrad writes (|log10 difference| < 1e-9) and, on the presets, to vangrad.simulate.
//
// Arrays are row-major Float64Arrays: h is (batch, n), a weight matrix is (n_in, n_out).

export const BATCHNORM_EPSILON = 1e-5; // vangrad.flow.BATCHNORM_EPSILON
export const SATURATION_THRESHOLD = 0.01; // vangrad.flow.SATURATION_THRESHOLD
const LOG10_2 = Math.log10(2);
const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_K = 0.044715;
const GELU_CLIP = 1e3;
const LEAKY_SLOPE = 0.01; // vangrad's default for leaky_relu
const ELU_ALPHA = 1.0; // vangrad's default for elu

// --- activations: phi(z) and phi'(z) into out arrays, as vangrad/activations.py computes them ---

function sigmoidValue(z) {
  const e = Math.exp(-Math.abs(z));
  const s = 1 / (1 + e);
  return z < 0 ? e * s : s;
}

function sigmoidSlope(z, s) {
  if (z > 2) {
    // e / (1 + e)^2 with e = exp(-z): 1 - s would cancel here.
    const e = Math.exp(-z);
    const r = (e + 1) * (e + 1);
    return e / r;
  }
  return (1 - s) * s;
}

function tanhSlopeFar(z) {
  const e = Math.exp(-2 * Math.min(Math.abs(z), 400));
  const d = (e + 1) * (e + 1);
  return (4 * e) / d;
}

function geluBoth(z) {
  const c = Math.min(Math.max(z, -GELU_CLIP), GELU_CLIP);
  // Each product in vangrad's order, so the rounding is the same.
  const twoU = (c * c * GELU_K + 1) * c * (2 * GELU_C);
  const e = Math.exp(-Math.abs(twoU));
  const r = 1 / (1 + e);
  const s = twoU >= 0 ? r : e * r;
  const slope = (c * c * (3 * GELU_K) + 1) * c * (2 * GELU_C) * e * r * r + s;
  return [z * s, slope];
}

function makeBoth(name) {
  switch (name) {
    case "sigmoid":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          const s = sigmoidValue(z[i]);
          v[i] = s;
          d[i] = sigmoidSlope(z[i], s);
        }
      };
    case "tanh":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          const t = Math.tanh(z[i]);
          v[i] = t;
          d[i] = Math.abs(z[i]) > 2 ? tanhSlopeFar(z[i]) : 1 - t * t;
        }
      };
    case "relu":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          const x = z[i];
          v[i] = x > 0 ? x : 0;
          d[i] = x > 0 ? 1 : 0;
        }
      };
    case "leaky_relu":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          const x = z[i];
          v[i] = x > 0 ? x : LEAKY_SLOPE * x;
          d[i] = x > 0 ? 1 : LEAKY_SLOPE;
        }
      };
    case "elu":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          const x = z[i];
          const m = Math.min(x, 0);
          v[i] = x > 0 ? x : ELU_ALPHA * Math.expm1(m);
          d[i] = x > 0 ? 1 : ELU_ALPHA * Math.exp(m);
        }
      };
    case "gelu":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          const [a, s] = geluBoth(z[i]);
          v[i] = a;
          d[i] = s;
        }
      };
    case "softplus":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          const x = z[i];
          v[i] = Math.log1p(Math.exp(-Math.abs(x))) + Math.max(x, 0);
          d[i] = sigmoidValue(x);
        }
      };
    case "linear":
      return (z, v, d, n) => {
        for (let i = 0; i < n; i++) {
          v[i] = z[i];
          d[i] = 1;
        }
      };
    default:
      throw new Error(`unknown activation ${JSON.stringify(name)}`);
  }
}

// The maximum of a smooth unimodal function by grid refinement, as vangrad's _maximise.
function maximise(f, low, high) {
  for (let round = 0; round < 6; round++) {
    const step = (high - low) / 1000;
    let best = 0;
    let bestValue = -Infinity;
    for (let i = 0; i <= 1000; i++) {
      const value = f(low + i * step);
      if (value > bestValue) {
        bestValue = value;
        best = i;
      }
    }
    const nextLow = low + Math.max(best - 1, 0) * step;
    const nextHigh = low + Math.min(best + 1, 1000) * step;
    low = nextLow;
    high = nextHigh;
    if (step < 1e-13) break;
  }
  let top = -Infinity;
  for (let i = 0; i <= 1000; i++) top = Math.max(top, f(low + (i * (high - low)) / 1000));
  return top;
}

/** The activations the explorer offers: vangrad.ACTIVATIONS, with its default parameters. */
export const ACTIVATIONS = {
  sigmoid: { derivativeMax: 0.25, label: "sigmoid" },
  tanh: { derivativeMax: 1, label: "tanh" },
  relu: { derivativeMax: 1, label: "ReLU" },
  leaky_relu: { derivativeMax: 1, label: "leaky ReLU (slope 0.01)" },
  elu: { derivativeMax: 1, label: "ELU (alpha 1)" },
  gelu: { derivativeMax: maximise((z) => geluBoth(z)[1], 0, 4), label: "GELU (tanh approximation)" },
  softplus: { derivativeMax: 1, label: "softplus" },
  linear: { derivativeMax: 1, label: "linear (identity)" },
};
for (const [name, act] of Object.entries(ACTIVATIONS)) act.both = makeBoth(name);

/** phi(z) and phi'(z) of one value, for the mean-field quadrature. */
const one = { z: new Float64Array(1), v: new Float64Array(1), d: new Float64Array(1) };
export function activationAt(name, z) {
  one.z[0] = z;
  ACTIVATIONS[name].both(one.z, one.v, one.d, 1);
  return [one.v[0], one.d[0]];
}

// --- initialisers: vangrad.INITIALIZERS (the variance of an entry at weight scale 1) ---

export const INITIALIZERS = {
  normal: { distribution: "normal", variance: () => 1, scaleIsStd: true, label: "normal (scale = std)" },
  xavier_normal: { distribution: "normal", variance: (i, o) => 2 / (i + o), label: "Glorot normal" },
  xavier_uniform: { distribution: "uniform", variance: (i, o) => 2 / (i + o), label: "Glorot uniform" },
  he_normal: { distribution: "normal", variance: (i) => 2 / i, label: "He normal" },
  he_uniform: { distribution: "uniform", variance: (i) => 2 / i, label: "He uniform" },
  lecun_normal: { distribution: "normal", variance: (i) => 1 / i, label: "LeCun normal" },
  orthogonal: { distribution: "orthogonal", variance: (i, o) => 1 / Math.max(i, o), label: "orthogonal" },
  legacy_uniform: { distribution: "uniform", variance: (i) => 1 / (3 * i), label: "legacy uniform (pre-2010)" },
};

// --- a seeded generator of its own (xoshiro128**, seeded by splitmix32) ---

export class Random {
  /** A generator for the seed and any further stream numbers (a trial, a layer...). */
  constructor(seed, ...streams) {
    let s = seed >>> 0;
    for (const stream of streams) s = Math.imul(s ^ (stream >>> 0), 0x9e3779b1) + 0x7f4a7c15;
    s >>>= 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s = Uint32Array.of(next(), next(), next(), next());
    this.spare = null;
  }

  uint32() {
    const s = this.s;
    const result = Math.imul(((Math.imul(s[1], 5) << 7) | (Math.imul(s[1], 5) >>> 25)), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 11) | (s[3] >>> 21);
    return result;
  }

  /** Uniform on [0, 1) with 53 random bits. */
  random() {
    return ((this.uint32() >>> 5) * 67108864 + (this.uint32() >>> 6)) / 9007199254740992;
  }

  /** Standard normal (Box-Muller, both values used). */
  normal() {
    if (this.spare !== null) {
      const value = this.spare;
      this.spare = null;
      return value;
    }
    let u = 0;
    while (u === 0) u = this.random();
    const radius = Math.sqrt(-2 * Math.log(u));
    const angle = 2 * Math.PI * this.random();
    this.spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  fillNormal(out) {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }

  fillUniform(out) {
    for (let i = 0; i < out.length; i++) out[i] = this.random();
    return out;
  }
}

/**
 * The raw draw behind a (fanIn, fanOut) matrix: standard normals for the normal and orthogonal
 * rules, uniforms on [0, 1) for the uniform ones. `scaleWeights` turns it into weights, so
 * that a change of gain redraws nothing.
 */
export function drawRaw(rng, init, fanIn, fanOut) {
  const out = new Float64Array(fanIn * fanOut);
  return INITIALIZERS[init].distribution === "uniform" ? rng.fillUniform(out) : rng.fillNormal(out);
}

/** Weights from a raw draw, as Initializer.sample computes them from numpy's draw (into `w`). */
export function scaleWeights(raw, init, fanIn, fanOut, scale, w = new Float64Array(raw.length)) {
  const rule = INITIALIZERS[init];
  if (rule.distribution === "orthogonal") {
    orthogonalise(raw, w, fanIn, fanOut);
    for (let i = 0; i < w.length; i++) w[i] *= scale;
    return w;
  }
  const std = scale * Math.sqrt(rule.variance(fanIn, fanOut));
  if (rule.distribution === "normal") {
    for (let i = 0; i < w.length; i++) w[i] = raw[i] * std;
    return w;
  }
  // Uniform on [-a, a], a = sqrt(3) std: variance a^2 / 3.
  const a = Math.sqrt(3) * std;
  for (let i = 0; i < w.length; i++) w[i] = raw[i] * 2 * a - a;
  return w;
}

// Haar-random orthonormal columns (tall) or rows (wide): Gram-Schmidt on a Gaussian matrix,
// which gives the Q of QR with R's diagonal positive, the sign fix of Mezzadri (2007).
function orthogonalise(raw, out, rows, cols) {
  const tall = Math.max(rows, cols);
  const short = Math.min(rows, cols);
  // Column k of the (tall, short) Gaussian matrix, from the raw draw read as (tall, short).
  const q = [];
  for (let k = 0; k < short; k++) {
    const v = new Float64Array(tall);
    for (let i = 0; i < tall; i++) v[i] = raw[i * short + k];
    for (let pass = 0; pass < 2; pass++) {
      for (const u of q) {
        let dot = 0;
        for (let i = 0; i < tall; i++) dot += u[i] * v[i];
        for (let i = 0; i < tall; i++) v[i] -= dot * u[i];
      }
    }
    let norm = 0;
    for (let i = 0; i < tall; i++) norm += v[i] * v[i];
    norm = Math.sqrt(norm);
    for (let i = 0; i < tall; i++) v[i] /= norm;
    q.push(v);
  }
  for (let k = 0; k < short; k++) {
    for (let i = 0; i < tall; i++) {
      if (rows >= cols) out[i * cols + k] = q[k][i];
      else out[k * cols + i] = q[k][i];
    }
  }
}

// --- norms and log space (vangrad/flow.py) ---

const SMALLEST_SAFE_SQUARE = 2.2250738585072014e-308 * 1e4;

/** The Frobenius norm of the first n entries, without over- or underflow. */
export function frobenius(a, n = a.length) {
  let squares = 0;
  for (let i = 0; i < n; i++) squares += a[i] * a[i];
  if (squares > SMALLEST_SAFE_SQUARE && squares < Infinity) return Math.sqrt(squares);
  let largest = 0;
  for (let i = 0; i < n; i++) largest = Math.max(largest, Math.abs(a[i]));
  const safe = largest > 0 && Number.isFinite(largest) ? largest : 1;
  squares = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i] / safe;
    squares += x * x;
  }
  return Math.sqrt(squares) * safe;
}

/** e with norm = m 2^e, 0.5 <= m < 1 (numpy's frexp); 0 for 0, inf and nan. */
export function binaryExponent(norm) {
  if (!(norm > 0) || !Number.isFinite(norm)) return 0;
  let e = Math.ceil(Math.log2(norm));
  while (2 ** e <= norm) e++;
  while (2 ** (e - 1) > norm) e--;
  return e;
}

function ldexpInPlace(a, n, exponent) {
  if (exponent === 0) return;
  // Two steps keep each factor a normal double even for exponents near the range's ends.
  const half = Math.trunc(exponent / 2);
  const f1 = 2 ** -half;
  const f2 = 2 ** -(exponent - half);
  for (let i = 0; i < n; i++) a[i] = a[i] * f1 * f2;
}

const log10Norm = (norm, scale) => Math.log10(norm) + scale * LOG10_2;

// --- the network ---

/**
 * out (m, p) = a (m, k) @ b (k, p). Blocks of 4 rows by 4 terms: each loaded entry of b serves
 * four rows and each store of out four terms, about three times the speed of the plain loop
 * in V8 (measured: 3.0 against 0.6 GMAC/s at 32 x 64 x 64).
 */
export function gemm(a, b, out, m, k, p) {
  out.fill(0, 0, m * p);
  const k4 = k - (k % 4);
  let i = 0;
  for (; i + 3 < m; i += 4) {
    const r0 = i * p, r1 = r0 + p, r2 = r1 + p, r3 = r2 + p;
    const a0 = i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
    let t = 0;
    for (; t < k4; t += 4) {
      const x00 = a[a0 + t], x01 = a[a0 + t + 1], x02 = a[a0 + t + 2], x03 = a[a0 + t + 3];
      const x10 = a[a1 + t], x11 = a[a1 + t + 1], x12 = a[a1 + t + 2], x13 = a[a1 + t + 3];
      const x20 = a[a2 + t], x21 = a[a2 + t + 1], x22 = a[a2 + t + 2], x23 = a[a2 + t + 3];
      const x30 = a[a3 + t], x31 = a[a3 + t + 1], x32 = a[a3 + t + 2], x33 = a[a3 + t + 3];
      const b0 = t * p, b1 = b0 + p, b2 = b1 + p, b3 = b2 + p;
      for (let j = 0; j < p; j++) {
        const v0 = b[b0 + j], v1 = b[b1 + j], v2 = b[b2 + j], v3 = b[b3 + j];
        out[r0 + j] += x00 * v0 + x01 * v1 + x02 * v2 + x03 * v3;
        out[r1 + j] += x10 * v0 + x11 * v1 + x12 * v2 + x13 * v3;
        out[r2 + j] += x20 * v0 + x21 * v1 + x22 * v2 + x23 * v3;
        out[r3 + j] += x30 * v0 + x31 * v1 + x32 * v2 + x33 * v3;
      }
    }
    for (; t < k; t++) {
      const x0 = a[a0 + t], x1 = a[a1 + t], x2 = a[a2 + t], x3 = a[a3 + t];
      const b0 = t * p;
      for (let j = 0; j < p; j++) {
        const v = b[b0 + j];
        out[r0 + j] += x0 * v;
        out[r1 + j] += x1 * v;
        out[r2 + j] += x2 * v;
        out[r3 + j] += x3 * v;
      }
    }
  }
  for (; i < m; i++) {
    const row = i * p;
    for (let t = 0; t < k; t++) {
      const x = a[i * k + t];
      const b0 = t * p;
      for (let j = 0; j < p; j++) out[row + j] += x * b[b0 + j];
    }
  }
}

/** out (k, p) = a^T @ b for a (m, k) and b (m, p): gemm's blocks, with a read transposed. */
export function gemmTN(a, b, out, m, k, p) {
  out.fill(0, 0, k * p);
  const m4 = m - (m % 4);
  let t = 0;
  for (; t + 3 < k; t += 4) {
    const r0 = t * p, r1 = r0 + p, r2 = r1 + p, r3 = r2 + p;
    let i = 0;
    for (; i < m4; i += 4) {
      const a0 = i * k + t, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
      const x00 = a[a0], x01 = a[a1], x02 = a[a2], x03 = a[a3];
      const x10 = a[a0 + 1], x11 = a[a1 + 1], x12 = a[a2 + 1], x13 = a[a3 + 1];
      const x20 = a[a0 + 2], x21 = a[a1 + 2], x22 = a[a2 + 2], x23 = a[a3 + 2];
      const x30 = a[a0 + 3], x31 = a[a1 + 3], x32 = a[a2 + 3], x33 = a[a3 + 3];
      const b0 = i * p, b1 = b0 + p, b2 = b1 + p, b3 = b2 + p;
      for (let j = 0; j < p; j++) {
        const v0 = b[b0 + j], v1 = b[b1 + j], v2 = b[b2 + j], v3 = b[b3 + j];
        out[r0 + j] += x00 * v0 + x01 * v1 + x02 * v2 + x03 * v3;
        out[r1 + j] += x10 * v0 + x11 * v1 + x12 * v2 + x13 * v3;
        out[r2 + j] += x20 * v0 + x21 * v1 + x22 * v2 + x23 * v3;
        out[r3 + j] += x30 * v0 + x31 * v1 + x32 * v2 + x33 * v3;
      }
    }
    for (; i < m; i++) {
      const a0 = i * k + t;
      const x0 = a[a0], x1 = a[a0 + 1], x2 = a[a0 + 2], x3 = a[a0 + 3];
      const b0 = i * p;
      for (let j = 0; j < p; j++) {
        const v = b[b0 + j];
        out[r0 + j] += x0 * v;
        out[r1 + j] += x1 * v;
        out[r2 + j] += x2 * v;
        out[r3 + j] += x3 * v;
      }
    }
  }
  for (; t < k; t++) {
    const row = t * p;
    for (let i = 0; i < m; i++) {
      const x = a[i * k + t];
      const b0 = i * p;
      for (let j = 0; j < p; j++) out[row + j] += x * b[b0 + j];
    }
  }
}

/** The transpose of a (rows, cols) matrix. */
export function transpose(a, rows, cols, out = new Float64Array(rows * cols)) {
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j];
  return out;
}

// z <- (z - mean) / sqrt(var + eps) over the batch, per unit, as vangrad's `normalise`.
function normalise(z, batch, n, inverseStd) {
  for (let j = 0; j < n; j++) {
    const first = z[j];
    let mean = 0;
    for (let b = 0; b < batch; b++) {
      z[b * n + j] -= first;
      mean += z[b * n + j];
    }
    mean /= batch;
    let variance = 0;
    for (let b = 0; b < batch; b++) {
      const c = (z[b * n + j] -= mean);
      variance += c * c;
    }
    variance /= batch;
    const s = 1 / Math.sqrt(variance + BATCHNORM_EPSILON);
    inverseStd[j] = s;
    for (let b = 0; b < batch; b++) z[b * n + j] *= s;
  }
}

// dLoss/dz from dLoss/dz_hat, in place: s (dz_hat - mean(dz_hat) - z_hat mean(dz_hat z_hat)).
function normaliseBackward(dz, zHat, inverseStd, batch, n) {
  for (let j = 0; j < n; j++) {
    const first = dz[j];
    let mean = 0;
    for (let b = 0; b < batch; b++) {
      dz[b * n + j] -= first;
      mean += dz[b * n + j];
    }
    mean /= batch;
    let projection = 0;
    for (let b = 0; b < batch; b++) {
      dz[b * n + j] -= mean;
      projection += dz[b * n + j] * zHat[b * n + j];
    }
    projection /= batch;
    const s = inverseStd[j];
    for (let b = 0; b < batch; b++) {
      const i = b * n + j;
      dz[i] = (dz[i] - zHat[i] * projection) * s;
    }
  }
}

/** Buffers for one network's pass, reused from one network to the next of the same shape. */
export class Workspace {
  fits(depth, batch, widths, batchnorm) {
    return (
      this.depth === depth &&
      this.batch === batch &&
      this.batchnorm === batchnorm &&
      this.widths.length === widths.length &&
      this.widths.every((n, i) => n === widths[i])
    );
  }

  constructor(depth, batch, widths, batchnorm) {
    Object.assign(this, { depth, batch, widths: [...widths], batchnorm });
    const sized = (l) => new Float64Array(batch * widths[l + 1]);
    const layers = Array.from({ length: depth }, (_, l) => l);
    this.z = layers.map(sized);
    this.a = layers.map(sized);
    this.slope = layers.map(sized);
    this.zHat = batchnorm ? layers.map(sized) : null;
    this.inverseStd = batchnorm ? layers.map((l) => new Float64Array(widths[l + 1])) : null;
    const largest = Math.max(...widths);
    this.dz = new Float64Array(batch * largest);
    this.dzSum = new Float64Array(batch * largest);
    this.g = [new Float64Array(batch * largest), new Float64Array(batch * largest)];
    this.dw = new Float64Array(largest * largest);
  }
}

/**
 * One network's forward and backward pass, as vangrad's `run_reference`.
 *
 * x: Float64Array (batch, n_0); weights: Float64Arrays, weights[l - 1] of shape
 * (widths[l - 1], widths[l]); upstream: Float64Array (batch, n_L), or null for the sum loss's
 * ones. residual: false, true or "post". transposedWeights, if given, holds each W_l^T (the
 * explorer keeps them with the weights, so that the backward pass does not transpose them);
 * workspace, if given, is a Workspace to reuse (one per caller: the next call overwrites it).
 *
 * Returns log10GradNorms (L + 1 values, l = 0..L), log10WeightGradNorms (L values, l = 1..L),
 * saturatedFraction (L values) and overflowLayer (the first layer whose z_l or h_l is not
 * finite, or 0).
 */
export function runNetwork({
  x,
  weights,
  transposedWeights = null,
  widths,
  batch,
  activation,
  batchnorm = false,
  residual = false,
  upstream = null,
  workspace = null,
}) {
  const act = ACTIVATIONS[activation];
  if (!act) throw new Error(`unknown activation ${JSON.stringify(activation)}`);
  if (residual !== false && residual !== true && residual !== "post") {
    throw new Error(`residual must be false, true or "post", got ${JSON.stringify(residual)}`);
  }
  const depth = weights.length;
  const ws =
    workspace && workspace.fits(depth, batch, widths, batchnorm)
      ? workspace
      : new Workspace(depth, batch, widths, batchnorm);
  const threshold = SATURATION_THRESHOLD * act.derivativeMax;
  const saturatedFraction = new Float64Array(depth);
  let overflowLayer = 0;
  let h = x;
  for (let l = 0; l < depth; l++) {
    const nIn = widths[l];
    const nOut = widths[l + 1];
    const size = batch * nOut;
    const z = ws.z[l];
    gemm(h, weights[l], z, batch, nIn, nOut); // z_l = h_{l-1} W_l
    if (batchnorm) {
      normalise(z, batch, nOut, ws.inverseStd[l]);
      ws.zHat[l].set(z);
    }
    if (residual === "post") for (let i = 0; i < size; i++) z[i] += h[i];
    const a = ws.a[l];
    const slope = ws.slope[l];
    act.both(z, a, slope, size);
    if (residual === true) for (let i = 0; i < size; i++) a[i] += h[i];
    let saturated = 0;
    let poison = 0; // x * 0 is nan exactly when x is inf or nan
    for (let i = 0; i < size; i++) {
      if (Math.abs(slope[i]) < threshold) saturated++;
      poison += z[i] * 0 + a[i] * 0;
    }
    saturatedFraction[l] = saturated / size;
    if (poison !== 0 && overflowLayer === 0) overflowLayer = l + 1;
    h = a;
  }

  const nL = widths[depth];
  const log10GradNorms = new Float64Array(depth + 1);
  const log10WeightGradNorms = new Float64Array(depth);
  let [g, gIn] = ws.g;
  const top = batch * nL;
  if (upstream) g.set(upstream.subarray(0, top));
  else g.fill(1, 0, top);
  let norm = frobenius(g, top);
  log10GradNorms[depth] = log10Norm(norm, 0);
  let scale = binaryExponent(norm);
  ldexpInPlace(g, top, scale);
  const dz = ws.dz;
  const dw = ws.dw;
  for (let l = depth - 1; l >= 0; l--) {
    const hIn = l > 0 ? ws.a[l - 1] : x;
    const slope = ws.slope[l];
    const nIn = widths[l];
    const nOut = widths[l + 1];
    const size = batch * nOut;
    for (let i = 0; i < size; i++) dz[i] = g[i] * slope[i]; // dLoss/dz = dLoss/da phi'(z)
    if (residual === "post") ws.dzSum.set(dz.subarray(0, size));
    if (batchnorm) normaliseBackward(dz, ws.zHat[l], ws.inverseStd[l], batch, nOut);
    gemmTN(hIn, dz, dw, batch, nIn, nOut); // dLoss/dW = h_in^T dLoss/dz
    log10WeightGradNorms[l] = log10Norm(frobenius(dw, nIn * nOut), scale);
    const wT = transposedWeights ? transposedWeights[l] : transpose(weights[l], nIn, nOut);
    gemm(dz, wT, gIn, batch, nOut, nIn); // dLoss/dh_in = dLoss/dz W^T
    const sizeIn = batch * nIn;
    if (residual === true) for (let i = 0; i < sizeIn; i++) gIn[i] += g[i];
    else if (residual === "post") for (let i = 0; i < sizeIn; i++) gIn[i] += ws.dzSum[i];
    norm = frobenius(gIn, sizeIn);
    log10GradNorms[l] = log10Norm(norm, scale);
    const exponent = binaryExponent(norm);
    ldexpInPlace(gIn, sizeIn, exponent);
    scale += exponent;
    [g, gIn] = [gIn, g];
  }
  return { log10GradNorms, log10WeightGradNorms, saturatedFraction, overflowLayer, workspace: ws };
}

/** A standard normal upstream gradient scaled to the norm of the ones (vangrad's loss="random"). */
export function randomUpstream(rng, batch, n) {
  const g = rng.fillNormal(new Float64Array(batch * n));
  const factor = Math.sqrt(batch * n) / frobenius(g);
  for (let i = 0; i < g.length; i++) g[i] *= factor;
  return g;
}

/** numpy.quantile's default (linear interpolation) of the finite values. */
export function quantile(values, p) {
  const sorted = Array.from(values).filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const position = p * (sorted.length - 1);
  const low = Math.floor(position);
  const high = Math.min(low + 1, sorted.length - 1);
  const t = position - low;
  const a = sorted[low];
  const b = sorted[high];
  if (t === 0 || a === b) return a;
  // numpy's lerp: from the nearer end, so that -inf at one end gives -inf, not nan.
  const difference = b - a;
  return t >= 0.5 ? b - difference * (1 - t) : a + difference * t;
}
