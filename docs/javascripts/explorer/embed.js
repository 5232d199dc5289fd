// An explorer embedded in a page, loaded only when the reader asks for it.
//
// A page marks the place with <div class="vg-embed" data-state="..."> (the explorer's URL
// hash form, hide=... included) holding a short caption. Until the reader presses "Run this
// experiment in the page", all it costs is this file: the explorer's modules, its styles and
// its workers load on that click, so a page that is only read stays as light as it was.
// The link beside the button opens the full explorer at the same settings, with every control.

const EXPLORER_PAGE = new URL("../../explorer/", import.meta.url);
const STYLES = new URL("../../stylesheets/explorer.css", import.meta.url);

/** The explorer page's URL for a state: the same settings, with no control hidden. */
export function explorerLink(state) {
  const params = new URLSearchParams(state.replace(/^#/, ""));
  params.delete("hide");
  // URLSearchParams would write the commas of a list as %2C; the keys here have none.
  return `${EXPLORER_PAGE.href}#${params.toString()}`;
}

function stylesLoaded() {
  const present = [...document.querySelectorAll("link[rel=stylesheet]")].find((link) => link.href === STYLES.href);
  if (present) return Promise.resolve();
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = STYLES.href;
  const loaded = new Promise((resolve) => {
    link.onload = resolve;
    link.onerror = resolve; // without its styles the explorer still works
  });
  document.head.appendChild(link);
  return loaded;
}

async function start(embed, row, button) {
  button.disabled = true;
  button.textContent = "Loading the explorer\u2026";
  const [{ mountAll }] = await Promise.all([import("./explorer.js"), stylesLoaded()]);
  const root = document.createElement("div");
  root.className = "vg-explorer";
  root.dataset.state = embed.dataset.state;
  row.replaceWith(root); // the explorer brings its own link, which follows its controls
  mountAll();
  // Keyboard readers go on from the first control the embed shows.
  const first = root.querySelector(".vg-field:not([hidden]) input, .vg-field:not([hidden]) select");
  if (first) first.focus();
}

function prepare() {
  for (const embed of document.querySelectorAll(".vg-embed:not(.vg-embed-ready)")) {
    embed.classList.add("vg-embed-ready");
    const row = document.createElement("p");
    row.className = "vg-embed-start";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "md-button";
    button.textContent = "Run this experiment in the page";
    button.addEventListener("click", () => start(embed, row, button), { once: true });
    const link = document.createElement("a");
    link.className = "vg-link";
    link.href = explorerLink(embed.dataset.state || "");
    link.textContent = "open it in the explorer";
    row.append(button, " or ", link);
    embed.appendChild(row);
  }
}

// Material's instant navigation swaps pages without running this module again: prepare every
// page it shows.
if (window.document$ && typeof window.document$.subscribe === "function") window.document$.subscribe(prepare);
else prepare();
