// The mean-field prediction the explorer overlays: vangrad.theory.predicted_log10_grad_norms.
//
// For a wide network with weights N(0, sigma_w^2 / n) and no biases, the pre-activation variance
// follows q_1 = sigma_w^2 mean(x^2), q_l = sigma_w^2 E[phi(sqrt(q_{l-1}) z)^2], and going down
// through layer l the mean squared gradient is multiplied by chi(q_l) = sigma_w^2
// E[phi'(sqrt(q_l) z)^2] (Poole et al. 2016; Schoenholz et al. 2017). vangrad integrates with
// Gauss-Hermite nodes for q <= 1 and a composite Gauss-Legendre rule beyond; here the
// composite Gauss-Legendre rule serves every q (its panels at least 24 on |z| <= 12), which
// tests/test_explorer.py holds to vangrad's predictions within 1e-9.

import { INITIALIZERS, activationAt } from "./engine.js";

const NODES = 10;
const Z_RANGE = 12;

// Gauss-Legendre nodes and weights on [-1, 1], by Newton's method on P_n.
function legendre(n) {
  const nodes = new Float64Array(n);
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let x = Math.cos((Math.PI * (i + 0.75)) / (n + 0.5));
    let derivative = 0;
    for (let iteration = 0; iteration < 100; iteration++) {
      let p0 = 1;
      let p1 = x;
      for (let k = 2; k <= n; k++) {
        const p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      derivative = (n * (x * p1 - p0)) / (x * x - 1);
      const step = p1 / derivative;
      x -= step;
      if (Math.abs(step) < 1e-16) break;
    }
    nodes[i] = x;
    weights[i] = 2 / ((1 - x * x) * derivative * derivative);
  }
  return { nodes, weights };
}

const RULE = legendre(NODES);
const ruleCache = new Map();

// Composite nodes on [-12, 12] with the standard normal density folded into the weights.
function composite(panels) {
  if (!ruleCache.has(panels)) {
    const z = new Float64Array(panels * NODES);
    const w = new Float64Array(panels * NODES);
    const half = Z_RANGE / panels;
    for (let p = 0; p < panels; p++) {
      const middle = -Z_RANGE + (2 * p + 1) * half;
      for (let i = 0; i < NODES; i++) {
        const x = middle + half * RULE.nodes[i];
        z[p * NODES + i] = x;
        w[p * NODES + i] = (half * RULE.weights[i] * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
      }
    }
    ruleCache.set(panels, { z, w });
  }
  return ruleCache.get(panels);
}

// E[phi(sqrt(q) z)^2] (part 0) or E[phi'(sqrt(q) z)^2] (part 1), closed forms where vangrad has them.
function meanSquare(activation, q, part) {
  if (activation === "linear") return part ? 1 : q;
  if (activation === "relu") return part ? 0.5 : 0.5 * q;
  if (activation === "leaky_relu") return 0.5 * (1 + 0.01 * 0.01) * (part ? 1 : q);
  if (q === 0) return activationAt(activation, 0)[part] ** 2;
  const { z, w } = composite(2 * Math.ceil(12 * Math.max(1, Math.sqrt(q))));
  const root = Math.sqrt(q);
  let sum = 0;
  for (let i = 0; i < z.length; i++) sum += activationAt(activation, root * z[i])[part] ** 2 * w[i];
  return sum;
}

/** sigma_w^2 = n Var(W) of square layers (vangrad.theory.init_sigma_w2). */
export function initSigmaW2(init, width, scale) {
  return width * scale * scale * INITIALIZERS[init].variance(width, width);
}

/** The predicted log10 ||g_l|| for l = 0..L, relative to the output (index L is 0). */
export function predictedLog10GradNorms(depth, sigmaW2, activation, inputSecondMoment = 1) {
  const steps = new Float64Array(depth);
  let q = sigmaW2 * inputSecondMoment;
  for (let l = 0; l < depth; l++) {
    if (l > 0) q = sigmaW2 * meanSquare(activation, q, 0);
    steps[l] = 0.5 * Math.log10(sigmaW2 * meanSquare(activation, q, 1));
  }
  const out = new Float64Array(depth + 1);
  for (let l = depth - 1; l >= 0; l--) out[l] = out[l + 1] + steps[l];
  return out;
}

/** chi_1's per-layer factor at the variance q (vangrad.theory.chi). */
export function chi(q, sigmaW2, activation) {
  return sigmaW2 * meanSquare(activation, q, 1);
}
