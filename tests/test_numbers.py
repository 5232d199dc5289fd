"""No number in the site's prose is typed where a computation produced it.

The footer says that every result on the site is computed by the code beside it. A result
typed into a sentence goes stale when the engine changes and nothing notices, so this scans
the prose of every built page (paragraphs, lists, headings, tables, math and figures' alt
text; never code or a notebook's code cells) for numbers. Each one must be

- computed: inside an element with a `data-computed` attribute (hooks/computed.py for the
  prose, hooks/figures.py for its tables), or in an image's alt text among the values its
  `data-computed-values` attribute lists; or
- a literal a reviewer accepted for that page in `docs/literal-numbers.yml`, with the reason:
  an analytic constant (0.25, the sigmoid's largest slope), a parameter the page chose (30
  layers), a quantity defined by the text (2 bytes); or
- one of the few literals read the same everywhere: a single digit, 10 (the base of every
  log axis) and a year.

An entry that no longer matches anything on its page fails too, so the list stays short.

What it cannot see: a result written as a word ("a factor of ten"), a single digit or 10, and
a typed result that happens to equal a literal listed for its page (entries hold for the whole
page). Those are for review to catch.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LITERALS = ROOT / "docs" / "literal-numbers.yml"

pytestmark = pytest.mark.slow

# Pages that are not prose: the API reference's pages are the package's docstrings (their
# numbers are defaults and examples, which the docstring tests run), the references page is
# bibliography.
NOT_PROSE = ("reference/", "references/")
_SKIPPED_TAGS = {"pre", "code", "script", "style", "svg", "kbd", "button"}
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}
_BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "h5", "td", "th", "figcaption", "dt", "dd"}
# Classes whose content is code or chrome: a notebook's code cells (input and printed output)
# and prompts, the heading permalinks; the install box, whose versions hooks/install.py reads
# from the package's own files.
_SKIPPED_CLASSES = {"jp-CodeCell", "jp-InputPrompt", "headerlink", "md-source-file", "vg-install"}
MINUS = "\N{MINUS SIGN}"
NUMBER = re.compile(rf"(?<![\w.\-{MINUS}])[-{MINUS}]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.]*\d)")


def _whole(number: str) -> str:
    """A pattern for `number` as a token of its own, by NUMBER's boundaries."""
    return rf"(?<![\w.\-{MINUS}]){re.escape(number)}(?![\w.]*\d)"


EVERYWHERE = re.compile(r"-?\d|10|(?:19|20)\d\d")


class _Prose(HTMLParser):
    """The article's text, block by block, without what `_SKIPPED_*` names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, bool]] = []  # (tag, whether its content is skipped)
        self.blocks: list[str] = []
        self.current: list[str] = []

    def _skipping(self) -> bool:
        return any(skipped for _, skipped in self.open)

    def _in_article(self) -> bool:
        return any(tag == "article" for tag, _ in self.open)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in _VOID_TAGS:
            if tag == "img" and self._in_article() and not self._skipping():
                alt = attributes.get("alt") or ""
                # The numbers hooks/computed.py wrote into the alt text, which it lists: each
                # taken out once, as a whole number (a computed 1 leaves a typed 10 alone).
                for value in (attributes.get("data-computed-values") or "").split():
                    for number in NUMBER.findall(value):
                        alt = re.sub(_whole(number), " ", alt, count=1)
                self.blocks.append(f"[figure: {alt}]")
            return
        classes = set((attributes.get("class") or "").split())
        skipped = tag in _SKIPPED_TAGS or bool(classes & _SKIPPED_CLASSES)
        skipped = skipped or "data-computed" in attributes
        self.open.append((tag, skipped))
        if tag in _BLOCKS:
            self._flush()
        self.current.append(" ")  # MathML tokens (<mn>, <mi>) are separate words

    def handle_endtag(self, tag: str) -> None:
        if not any(open_tag == tag for open_tag, _ in self.open):
            return
        while self.open and self.open.pop()[0] != tag:
            pass
        if tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_article() and not self._skipping():
            self.current.append(data)

    def _flush(self) -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.blocks.append(text)
        self.current = []

    def close(self) -> None:
        super().close()
        self._flush()


def typed_numbers(page_html: str) -> list[tuple[str, str]]:
    """Each number of the page's prose that is not computed: (number, the text around it)."""
    parser = _Prose()
    parser.feed(page_html)
    parser.close()
    found = []
    for block in parser.blocks:
        for match in NUMBER.finditer(block):
            number = match.group(0).replace(MINUS, "-")
            if EVERYWHERE.fullmatch(number):
                continue
            context = block[max(0, match.start() - 60) : match.end() + 40]
            found.append((number, context))
    return found


def _pages(site: Path) -> dict[str, Path]:
    pages = {}
    for path in sorted(site.rglob("index.html")):
        uri = path.parent.relative_to(site).as_posix() + "/"
        uri = "" if uri == "./" else uri
        if not uri.startswith(NOT_PROSE):
            pages[uri] = path
    return pages


def _source_name(uri: str) -> str:
    """The page's entry in the literals file: its Markdown (or notebook) file under docs/."""
    if not uri:
        return "index.md"
    stem = uri.rstrip("/")
    if stem.startswith("notebooks/"):
        return f"{stem}.py"
    return f"{stem}.md"


def test_every_number_in_the_prose_is_computed_or_a_reviewed_literal(built_site: Path) -> None:
    literals: dict[str, dict[str, str]] = yaml.safe_load(LITERALS.read_text(encoding="utf-8"))
    typed, unused = [], []
    for uri, path in _pages(built_site).items():
        name = _source_name(uri)
        allowed = {str(number): why for number, why in (literals.get(name) or {}).items()}
        seen = set()
        for number, context in typed_numbers(path.read_text(encoding="utf-8")):
            seen.add(number)
            if number not in allowed:
                typed.append(f"{name}: {number!r} in ...{context}...")
        unused += [f"{name}: {number!r}" for number in allowed if number not in seen]
    unknown = sorted(set(literals) - {_source_name(uri) for uri in _pages(built_site)})
    assert not typed, (
        "numbers typed into the prose: compute each with {{ expression }} (see Contributing), "
        f"or, for a constant or a chosen parameter, list it in {LITERALS.name}:\n"
        + "\n".join(typed)
    )
    assert not unused, f"entries of {LITERALS.name} that their page no longer has: {unused}"
    assert not unknown, f"{LITERALS.name} names pages that do not exist: {unknown}"


def test_the_scan_finds_typed_numbers_and_passes_computed_ones() -> None:
    page = (
        "<article><p>The gradient falls by 10<sup>8.5</sup> over 60 layers "
        '(<span data-computed="x">0.0096</span>), in 2010, by 3 and by 10.</p>'
        "<pre><code>print(123.4)</code></pre>"
        '<p><img alt="a curve that ends at 0.75"></p>'
        '<p><img alt="computed: 10^-8.5, typed: 3.5" data-computed-values="10^-8.5"></p>'
        '<p><img alt="typed 10.25, computed 0.2" data-computed-values="0.2"></p>'
        "<p><math><msup><mn>10</mn><mn>23</mn></msup></math></p></article>"
        "<p>outside the article: 99</p>"
    )
    assert [number for number, _ in typed_numbers(page)] == [
        "8.5",
        "60",
        "0.75",
        "3.5",
        "10.25",
        "23",
    ]
