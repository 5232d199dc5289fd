"""The built site as a reader's browser shows it: a real Chromium, driven by Playwright.

The site is built into a temporary folder and served on 127.0.0.1 by the test itself. For every
page: it loads with no console error, requests nothing from any other host, every image has
loaded and has alt text, every formula is rendered, every code block has a copy button, and the
page stays under a weight budget. Search works offline and the dark palette keeps figures
legible. A full-page screenshot of every page goes to `test-artifacts/screenshots/`.

Without a browser these tests skip with a one-line reason, except in CI (`CI=true`), where a
missing browser is a failure: `.ci/run` installs Debian's `chromium`.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# Bytes one page transfers on a first visit (empty cache), uncompressed, as from a server that
# does not compress: everything it loads, figures, Material's assets and what its Web Workers
# fetch included.
PAGE_WEIGHT_BUDGET = 600_000
PAGES_AT_ONCE = 3  # pages loading side by side when every page is visited (measured best of 1-4)
BROWSER_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# Flags for a browser that must not phone home: this machine's network is closed, and a site
# that reads offline must not depend on anything the browser fetches for itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


def _browser_path() -> str | None:
    configured = os.environ.get("VANGRAD_BROWSER")
    if configured:
        return configured
    return next((p for p in BROWSER_CANDIDATES if Path(p).exists()), shutil.which("chromium"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is in the test extra
        _unavailable("playwright is not installed (run ./dev test)")
    from playwright.sync_api import Error as PlaywrightError

    path = _browser_path()
    with sync_playwright() as playwright:
        try:
            # Without a system Chromium, Playwright's own build (`playwright install chromium`,
            # as on GitHub's runners) is the fallback.
            browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except PlaywrightError as error:
            first_line = str(error).strip().splitlines()[0]
            _unavailable(f"no usable Chromium (apt-get install chromium): {first_line}")
        yield browser
        browser.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def server(built_site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(built_site))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        httpd.shutdown()


def _page_paths(site: Path) -> list[str]:
    """Every page of the site, as a path relative to its root ("" for the home page)."""
    pages = []
    for html in sorted(site.rglob("index.html")):
        relative = html.parent.relative_to(site).as_posix()
        pages.append("" if relative == "." else f"{relative}/")
    return pages


@dataclass
class _Visit:
    """What one page load did: requests, console errors, bytes transferred."""

    off_site: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes: int = 0
    # Every request answered, the page's and its workers' alike, by address.
    answered: dict[str, object] = field(default_factory=dict)

    def weigh(self) -> int:
        """The bytes of every address fetched so far, once each: headers and body.

        Counted from the network, not from the page's performance entries, which miss what a
        Web Worker fetches in its own realm. An address fetched twice (a module that the page
        and its workers both import) counts once: a browser with its cache on fetches it once
        per visit, and the tests' routing turns the cache off.
        """
        total = 0
        # A snapshot: asking Playwright for a body runs its event loop, which can answer a
        # late request (a favicon) into this very dict while it is being read.
        for request in list(self.answered.values()):
            response = request.response()
            if response is None:
                continue
            total += len(response.body()) + request.sizes()["responseHeadersSize"]
        self.bytes = total
        return total


def _start(browser: object, url: str, *, color_scheme: str = "light") -> tuple[object, _Visit]:
    """Begin loading `url` in a fresh context, recording what it does from the first request."""
    # A fresh context per page: empty cache, so the page weight is what a first visit costs.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, color_scheme=color_scheme
    )
    page = context.new_page()
    visit = _Visit()

    def on_request(request: object) -> None:
        if urlparse(request.url).hostname not in {"127.0.0.1", None} and not request.url.startswith(
            ("data:", "blob:")
        ):
            visit.off_site.append(request.url)

    def on_route(route: object) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:  # record it (on_request) and never let it leave the machine
            route.abort()

    page.on("request", on_request)
    # On the context: a Web Worker's requests are the page's bytes too.
    context.on("requestfinished", lambda request: visit.answered.setdefault(request.url, request))
    page.route("**/*", on_route)
    page.on("console", lambda msg: msg.type == "error" and visit.errors.append(msg.text))
    page.on("pageerror", lambda error: visit.errors.append(str(error)))
    page.goto(url, wait_until="commit")
    return page, visit


def _settle(page: object, visit: _Visit) -> None:
    """Wait until the page has loaded and its network has been idle, then weigh it."""
    page.wait_for_load_state("networkidle")
    visit.weigh()


def _open(browser: object, url: str, *, color_scheme: str = "light") -> tuple[object, _Visit]:
    page, visit = _start(browser, url, color_scheme=color_scheme)
    _settle(page, visit)
    return page, visit


def _open_each(browser: object, urls: list[str]) -> Iterator[tuple[object, _Visit]]:
    """Open every URL as `_open` does, in order, with the next few already loading meanwhile.

    Most of a page's time is its wait for an idle network; pages that wait side by side cost
    little more than one. Each page's context is closed after the caller is done with it.
    """
    loading: deque[tuple[object, _Visit]] = deque()
    pending = iter(urls)
    try:
        while True:
            for url in itertools.islice(pending, PAGES_AT_ONCE - len(loading)):
                loading.append(_start(browser, url))
            if not loading:
                return
            page, visit = loading.popleft()
            _settle(page, visit)
            yield page, visit
            page.context.close()
    finally:
        for page, _ in loading:
            page.context.close()


def _screenshot_name(path: str, suffix: str = "") -> Path:
    stem = path.strip("/").replace("/", "__") or "home"
    return SCREENSHOTS / f"{stem}{suffix}.png"


def test_every_page_reads_offline_and_renders(
    browser: object, server: str, built_site: Path
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    paths = _page_paths(built_site)
    assert "" in paths
    assert len(paths) >= 3
    problems: list[str] = []
    weights: dict[str, int] = {}
    images_checked = 0
    visits = _open_each(browser, [server + path for path in paths])
    for path, (page, visit) in zip(paths, visits, strict=True):
        where = path or "home"
        problems += [f"{where}: request to another host: {u}" for u in visit.off_site]
        problems += [f"{where}: console error: {e}" for e in visit.errors]
        weights[where] = visit.bytes
        if visit.bytes > PAGE_WEIGHT_BUDGET:
            problems.append(f"{where}: {visit.bytes:,} bytes exceeds {PAGE_WEIGHT_BUDGET:,}")

        images = page.evaluate(
            """() => [...document.querySelectorAll('.md-content img')].map(img => ({
                src: img.getAttribute('src'), width: img.naturalWidth,
                alt: (img.getAttribute('alt') || '').trim()}))"""
        )
        images_checked += len(images)
        for image in images:
            if image["width"] <= 0:
                problems.append(f"{where}: image {image['src']} did not load")
            if not image["alt"] or image["alt"].startswith("No description has been provided"):
                problems.append(f"{where}: image {image['src'][:60]} has no alt text")

        # Text a reader sees, less code: no LaTeX delimiters may be left in it.
        prose = page.evaluate(
            """() => {
                const copy = document.querySelector('.md-content').cloneNode(true);
                const verbatim = copy.querySelectorAll('pre, code, math, script, style');
                verbatim.forEach(node => node.remove());
                return copy.innerText;
            }"""
        )
        raw = re.findall(r"\\\(|\\\[|\$\$|\$[^$\s][^$\n]*\$", prose)
        if raw:
            problems.append(f"{where}: unrendered LaTeX {raw[:3]}")
        blocks = page.locator(".md-content pre > code").count()
        buttons = page.locator('.md-content pre button[data-md-type="copy"]').count()
        if buttons != blocks:
            problems.append(f"{where}: {blocks} code blocks but {buttons} copy buttons")

        page.screenshot(path=_screenshot_name(path))  # the first screen: full pages cost seconds
    print(
        f"\n{len(paths)} pages, {images_checked} images; largest page "
        f"{max(weights, key=weights.get)} at {max(weights.values()):,} bytes"
    )
    assert not problems, "\n".join(problems)


def test_home_page_math_is_mathml_with_size(browser: object, server: str) -> None:
    page, _ = _open(browser, server)
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('.md-content math')].map(m => {
            const r = m.getBoundingClientRect(); return [r.width, r.height]; })"""
    )
    assert len(boxes) >= 5
    # MathML that the browser did not lay out would have no size.
    assert all(width > 0 and height > 0 for width, height in boxes)
    page.context.close()


def _index_requested(page: object) -> bool:
    """Whether the page has fetched the search index and the search worker's script."""
    fetched = page.evaluate(
        """() => performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)"""
    )
    index = any(path.endswith("/search/search_index.json") for path in fetched)
    worker = any(re.search(r"/workers/search\.[^/]*\.js$", path) for path in fetched)
    assert index == worker, f"the index and the worker load together: {fetched}"
    return index


@pytest.mark.parametrize("how", ["key", "click"])
def test_search_works_offline_and_loads_its_index_only_when_wanted(
    browser: object, server: str, how: str
) -> None:
    page, visit = _open(browser, server)
    # overrides/lazy-search-index.js holds the index back: a page that is only read skips it.
    assert not _index_requested(page), "the search index loaded before anyone searched"
    if how == "key":
        page.keyboard.press("/")
    else:
        page.locator("input.md-search__input").click()
    page.keyboard.type("sigmoid")
    results = page.locator(".md-search-result__item")
    results.first.wait_for(timeout=10_000)
    links = page.eval_on_selector_all(
        ".md-search-result__item a", "links => links.map(a => a.getAttribute('href'))"
    )
    assert any(urlparse(link).path.rstrip("/") in {"", "."} for link in links), links
    assert _index_requested(page)
    assert not visit.off_site
    assert not visit.errors, visit.errors
    page.context.close()


def test_dark_palette_keeps_figures_legible(browser: object, server: str) -> None:
    page, visit = _open(browser, server)
    assert page.get_attribute("body", "data-md-color-scheme") == "default"
    page.locator("label.md-header__button[for='__palette_1']").click()
    page.wait_for_function("document.body.dataset.mdColorScheme === 'slate'")
    page_background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    figure_backgrounds = page.evaluate(
        """() => [...document.querySelectorAll('.md-content img')]
            .map(img => getComputedStyle(img).backgroundColor)"""
    )
    assert figure_backgrounds
    # Figures keep their white ground on the dark page, so their dark text stays readable.
    assert all(bg == "rgb(255, 255, 255)" for bg in figure_backgrounds), figure_backgrounds
    assert page_background != "rgb(255, 255, 255)"
    page.screenshot(path=_screenshot_name("", "-dark"), full_page=True)
    assert not visit.errors
    page.context.close()


def test_notebook_pages_show_outputs_and_offer_downloads(
    browser: object, server: str, built_site: Path
) -> None:
    notebook_pages = sorted(p.parent for p in built_site.glob("notebooks/*/index.html"))
    assert notebook_pages, "no rendered notebook in the site"
    for folder in notebook_pages:
        path = f"{folder.relative_to(built_site).as_posix()}/"
        page, visit = _open(browser, server + path)
        assert not visit.errors, visit.errors
        assert not visit.off_site, visit.off_site
        outputs = page.locator(".jupyter-wrapper .jp-OutputArea-output")
        assert outputs.count() >= 1, f"{path}: no output cells"
        figures = page.evaluate(
            """() => [...document.querySelectorAll('.jp-OutputArea-output img')]
                .map(img => img.naturalWidth)"""
        )
        assert figures, f"{path}: no figure among the outputs"
        assert all(width > 0 for width in figures), f"{path}: a figure did not load"
        for link in page.locator(".vangrad-downloads a").all():
            href = link.get_attribute("href")
            response = page.request.get(urljoin(server + path, href))
            assert response.ok, f"{path}: download {href} answered {response.status}"
            assert len(response.body()) > 100
        assert page.locator(".vangrad-downloads a").count() == 2
        page.context.close()


def test_a_notebook_cell_copy_button_copies_the_code_the_cell_shows(
    browser: object, server: str, built_site: Path
) -> None:
    import nbformat

    path = "notebooks/playground/"  # among its cells, one with a "$" that is not mathematics
    notebook = nbformat.read(built_site / path / "playground.ipynb", as_version=4)
    # The page shows each cell without its "# alt:" lines, the build's note for its figure.
    alt_lines = re.compile(r"^# alt:.*\n(?:#  .*\n)*", re.MULTILINE)
    sources = [
        alt_lines.sub("", cell.source + "\n").rstrip()
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    page, visit = _open(browser, server + path)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    buttons = page.locator(".jp-CodeCell .vg-cell-copy")
    assert buttons.count() == len(sources)
    copied = []
    for index in range(buttons.count()):
        buttons.nth(index).click()
        copied.append(page.evaluate("navigator.clipboard.readText()"))
    assert copied == sources
    assert any("$" in source for source in sources)
    # Material's clipboard says so, as it does for every other page's copy buttons.
    assert page.locator(".md-dialog").inner_text().strip()
    assert not visit.errors, visit.errors
    page.context.close()


def _rgba(css: str) -> tuple[float, ...]:
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    return (*values[:3], values[3] if len(values) > 3 else 1.0)


def _contrast(foreground: str, background: str) -> float:
    """WCAG contrast of text in `foreground` (composited, if translucent) on `background`."""
    *front, alpha = _rgba(foreground)
    *back, back_alpha = _rgba(background)
    assert back_alpha == 1.0, (
        f"a translucent tooltip background lets the text behind show: {background}"
    )
    mixed = [alpha * f + (1 - alpha) * b for f, b in zip(front, back, strict=True)]

    def luminance(rgb: list[float]) -> float:
        linear = [
            c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4
            for c in rgb
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(mixed), luminance(back)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_a_computed_number_shows_its_origin_on_hover_and_on_keyboard_focus(
    browser: object, server: str, color_scheme: str
) -> None:
    page, visit = _open(browser, server + "chain-rule/", color_scheme=color_scheme)
    number = page.locator(".md-content .vg-computed").first
    origin = number.get_attribute("data-computed")
    assert origin
    assert "code block" in origin

    def tooltip() -> dict[str, str]:
        return number.evaluate(
            """el => { const s = getComputedStyle(el, '::after');
                return {content: s.content, color: s.color, background: s.backgroundColor}; }"""
        )

    assert tooltip()["content"] in ("none", "normal", "")  # quiet until asked
    number.hover()
    shown = tooltip()
    assert origin in shown["content"], shown
    assert _contrast(shown["color"], shown["background"]) >= 4.5, shown  # WCAG AA for text
    page.screenshot(path=_screenshot_name("chain-rule", f"-computed-{color_scheme}"))
    page.mouse.move(0, 0)
    # From the keyboard: tab to it (every computed number is a tab stop), as a reader would.
    for _ in range(300):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('vg-computed')"):
            break
    else:
        pytest.fail("no computed number took the keyboard focus")
    focused = page.evaluate("getComputedStyle(document.activeElement, '::after').content")
    assert "Computed while the site was built" in focused, focused
    assert not visit.errors
    page.context.close()


def test_the_copy_button_copies_what_the_reader_path_test_runs(
    browser: object, server: str, built_site: Path
) -> None:
    from tests.test_reader_path import copied_blocks

    # Pages with loops, long outputs, docstring examples and excerpts among their blocks.
    pages = ["", "engine/", "reference/api/", "theory/glorot-bengio/"]
    for path in pages:
        markup = (built_site / path / "index.html").read_text(encoding="utf-8")
        page, _ = _open(browser, server + path)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        buttons = page.locator(
            ".md-content :is(.language-py, .language-python):not(.doc-signature) pre "
            'button[data-md-type="copy"]'
        )
        copied = []
        for index in range(buttons.count()):
            buttons.nth(index).click()
            copied.append(page.evaluate("navigator.clipboard.readText()"))
        assert copied == copied_blocks(markup), (
            f"{path or 'home'}: the copy button copies otherwise"
        )
        assert copied, f"{path or 'home'}: no Python block"
        page.context.close()
