// The explorer's worker: runs its share of the trials off the main thread, so that the page
// never freezes. A job that a newer one supersedes stops at its next trial.

import { Networks } from "./simulate.js";

const networks = new Networks();
let latest = -1;

const pause = () => new Promise((resolve) => setTimeout(resolve, 0));

self.onmessage = async ({ data: job }) => {
  latest = job.id;
  const results = [];
  const started = performance.now();
  let since = started;
  for (let trial = job.from; trial < job.to; trial++) {
    const [result] = networks.run(job.settings, trial, trial + 1, job.to - job.from);
    results.push(result);
    if (performance.now() - since > 40) {
      // Long settings: say how far we are, and let a newer job in.
      self.postMessage({ id: job.id, type: "progress", done: trial + 1 - job.from });
      await pause();
      if (job.id !== latest) return;
      since = performance.now();
    }
  }
  const ms = performance.now() - started;
  self.postMessage({ id: job.id, type: "result", from: job.from, results, ms });
};
