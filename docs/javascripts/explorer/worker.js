// The explorer's worker: runs its share of the trials off the main thread, so that the page
// never freezes, and says how far it is after every network that took a while. A job that a
// newer one supersedes is stopped by the page, which ends a busy worker and starts another.

import { Networks } from "./simulate.js";

const networks = new Networks();

self.onmessage = ({ data: job }) => {
  const results = [];
  const started = performance.now();
  let since = started;
  for (let trial = job.from; trial < job.to; trial++) {
    const [result] = networks.run(job.settings, trial, trial + 1, job.to - job.from);
    results.push(result);
    if (performance.now() - since > 40) {
      self.postMessage({ id: job.id, type: "progress", done: trial + 1 - job.from });
      since = performance.now();
    }
  }
  const ms = performance.now() - started;
  self.postMessage({ id: job.id, type: "result", from: job.from, results, ms });
};
