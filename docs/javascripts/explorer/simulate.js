// Random networks from the explorer's settings, as vangrad.simulate builds them: a standard
// normal input of shape (batch, width) shared by every trial, square layers drawn from the
// initialiser, the sum loss (an upstream gradient of ones) or the random one.
//
// The draws are the explorer's own (engine.js's generator, not numpy's): every layer of every
// trial has a stream of its own, so a network keeps its lower layers when the depth changes
// and its draw when the gain changes, and the caches below only redraw what a change needs.

import { INITIALIZERS, Random, drawRaw, randomUpstream, runNetwork, scaleWeights, transpose } from "./engine.js";

const X_STREAM = 0x78; // "x"
const UPSTREAM_STREAM = 0x67; // "g"
// The caches keep a setting's draws (three matrices a layer: the draw, W and W^T) while they
// fit in this many bytes; a larger setting draws its weights afresh each time.
const CACHE_BYTES = 96 * 2 ** 20;

/**
 * The settings the explorer opens with. Width 32 and a batch of 16 rather than larger: a
 * control change must show its result within 50 ms (tests/test_explorer.py measures it), and
 * three matrix products per layer, 60 layers and 8 networks at width 64 and batch 32 took
 * 100 to 300 ms on a shared 2-core machine.
 */
export const DEFAULTS = {
  activation: "relu",
  init: "he_normal",
  gain: 1,
  depth: 60,
  width: 32,
  batch: 16,
  trials: 8,
  seed: 1,
  batchnorm: 0,
  residual: "0",
  loss: "sum",
};

export class Networks {
  constructor() {
    this.raw = new Map(); // `${kind}|${trial}|${layer}` -> raw draw, of the family's width and seed
    // `${trial}|${layer}` -> [W, W^T, the initialiser and gain they were scaled for]. A change
    // of initialiser or gain rescales them in place: a gain slider's every step would
    // otherwise allocate two matrices per layer and network, and the collector would run.
    this.weights = new Map();
    this.family = null;
  }

  // Forget every draw of another family (width and seed): memory stays one setting's worth.
  forget(width, seed, init, gain) {
    const family = `${width}|${seed}`;
    if (family !== this.family) {
      this.raw.clear();
      this.weights.clear();
      this.family = family;
    }
    this.scaled = `${init}|${gain}`;
  }

  // The raw draw behind layer `layer` of trial `trial`: standard normals or uniforms.
  rawDraw(s, trial, layer) {
    const kind = INITIALIZERS[s.init].distribution === "uniform" ? "uniform" : "normal";
    const key = `${kind}|${trial}|${layer}`;
    let raw = this.raw.get(key);
    if (!raw) {
      const init = kind === "uniform" ? "xavier_uniform" : "xavier_normal";
      raw = drawRaw(new Random(s.seed, trial, layer, kind === "uniform" ? 1 : 2), init, s.width, s.width);
      if (this.keep) this.raw.set(key, raw);
    }
    return raw;
  }

  layer(s, trial, layer) {
    const key = `${trial}|${layer}`;
    let pair = this.weights.get(key);
    if (!pair) {
      const w = scaleWeights(this.rawDraw(s, trial, layer), s.init, s.width, s.width, s.gain);
      pair = [w, transpose(w, s.width, s.width), this.scaled];
      if (this.keep) this.weights.set(key, pair);
    } else if (pair[2] !== this.scaled) {
      scaleWeights(this.rawDraw(s, trial, layer), s.init, s.width, s.width, s.gain, pair[0]);
      transpose(pair[0], s.width, s.width, pair[1]);
      pair[2] = this.scaled;
    }
    return pair;
  }

  /**
   * Run trials `from` to `to - 1` of the settings `s`, one of `span` trials this object runs
   * for the setting (the caches keep the draws if all of them fit).
   */
  run(s, from, to, span = to - from) {
    this.forget(s.width, s.seed, s.init, s.gain);
    this.keep = 3 * 8 * s.width * s.width * s.depth * span <= CACHE_BYTES;
    const x = new Random(s.seed, X_STREAM).fillNormal(new Float64Array(s.batch * s.width));
    const widths = new Array(s.depth + 1).fill(s.width);
    const results = [];
    for (let trial = from; trial < to; trial++) {
      const weights = [];
      const transposedWeights = [];
      for (let l = 0; l < s.depth; l++) {
        const [w, wT] = this.layer(s, trial, l);
        weights.push(w);
        transposedWeights.push(wT);
      }
      const upstream =
        s.loss === "random" ? randomUpstream(new Random(s.seed, UPSTREAM_STREAM, trial, s.batch), s.batch, s.width) : null;
      const result = runNetwork({
        x,
        weights,
        transposedWeights,
        widths,
        batch: s.batch,
        activation: s.activation,
        batchnorm: Boolean(s.batchnorm),
        residual: s.residual === "1" ? true : s.residual === "post" ? "post" : false,
        upstream,
        workspace: this.workspace,
      });
      this.workspace = result.workspace; // the next network's buffers; not for the page
      delete result.workspace;
      results.push(result);
    }
    return results;
  }
}
