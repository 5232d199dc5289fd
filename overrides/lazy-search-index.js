// Material requests the search index (search/search_index.json, the largest file of the site)
// and starts its search worker as every page loads, whether or not the reader searches. Hold
// both back until the reader first reaches for the search box; the box says "Initializing
// search" meanwhile. Material requests the index with XMLHttpRequest, so this wraps open() and
// send() to spot that one request.
(() => {
  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  const held = new WeakSet();
  const waiting = [];
  let wanted = false;

  const release = () => {
    if (wanted) return;
    wanted = true;
    for (const go of waiting.splice(0)) go();
  };

  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    if (new URL(url, location.href).pathname.endsWith("/search/search_index.json")) {
      held.add(this);
    }
    return open.call(this, method, url, ...rest);
  };
  XMLHttpRequest.prototype.send = function (...body) {
    if (held.has(this) && !wanted) {
      waiting.push(() => send.apply(this, body));
      return;
    }
    return send.apply(this, body);
  };

  // The search worker's script waits too. Material creates the worker as the page loads, but
  // first posts to it once the index has arrived: the real worker starts then.
  const RealWorker = window.Worker;
  const searchWorker = /\/assets\/javascripts\/workers\/search\.[^/]*\.js$/;
  window.Worker = class extends EventTarget {
    constructor(url, options) {
      if (!searchWorker.test(new URL(url, location.href).pathname)) {
        return new RealWorker(url, options);
      }
      super();
      this.start = () => {
        const worker = new RealWorker(url, options);
        for (const type of ["message", "messageerror", "error"]) {
          worker.addEventListener(type, (event) => {
            this.dispatchEvent(new event.constructor(type, event));
          });
        }
        return worker;
      };
      this.real = null;
    }
    postMessage(message, transfer) {
      this.real ??= this.start();
      this.real.postMessage(message, transfer);
    }
    terminate() {
      this.real?.terminate();
    }
  };

  // Whatever opens the search: its box or its label, Material's keys (/, s, f), a shared ?q=,
  // and a result opened in a page of its own (?h=), whose words Material highlights from it.
  addEventListener("focusin", (event) => {
    if (event.target.closest?.("[data-md-component=search]")) release();
  });
  addEventListener("pointerdown", (event) => {
    if (event.target.closest?.("[data-md-component=search], label[for=__search]")) release();
  }, true);
  addEventListener("keydown", (event) => {
    if (["/", "s", "f", "S", "F"].includes(event.key)) release();
  }, true);
  const query = new URLSearchParams(location.search);
  if (query.has("q") || query.has("h")) release();
})();
