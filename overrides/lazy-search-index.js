// Material requests the search index (search/search_index.json, the largest file of the site)
// as every page loads, whether or not the reader searches. Hold that one request back until
// the reader first reaches for the search box; the box says "Initializing search" meanwhile.
// Material makes the request with XMLHttpRequest, so this wraps open() and send() to spot it.
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
