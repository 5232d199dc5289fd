"""The whole site builds with `mkdocs build --strict`, and what it builds reads offline.

The browser tests drive a real Chromium over the same build; these checks need no browser and
catch the common mistakes early: a page or figure missing, a formula left as raw LaTeX, or an
asset, font or script loaded from another host.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import vangrad

pytestmark = pytest.mark.slow


@pytest.fixture
def site(built_site: Path) -> Path:
    return built_site


class _LoadedResources(HTMLParser):
    """Collect the URLs a browser would fetch while showing a page (not plain links)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in {"script", "img", "iframe", "audio", "video", "source", "embed"}:
            self.urls += [v for k, v in values.items() if k in {"src", "srcset"} and v]
        # rel="canonical" and the like only name an address; these make the browser fetch.
        fetched = {"stylesheet", "icon", "preload", "prefetch", "preconnect", "modulepreload"}
        rels = set((values.get("rel") or "").lower().split())
        if tag == "link" and values.get("href") and rels & (fetched | {"manifest"}):
            self.urls.append(values["href"])
        if tag == "object" and values.get("data"):
            self.urls.append(values["data"])


def _is_off_site(url: str) -> bool:
    return bool(re.match(r"^(https?:)?//", url.strip()))


def _pages(site: Path) -> list[Path]:
    pages = sorted(site.rglob("*.html"))
    assert pages, "the build wrote no pages"
    return pages


def test_every_nav_page_is_built(site: Path) -> None:
    for page in ("index.html", "contributing/index.html", "reference/api/index.html"):
        assert (site / page).is_file(), page


def test_no_page_loads_anything_from_another_host(site: Path) -> None:
    offenders: list[str] = []
    for page in _pages(site):
        parser = _LoadedResources()
        parser.feed(page.read_text(encoding="utf-8"))
        offenders += [f"{page.relative_to(site)}: {u}" for u in parser.urls if _is_off_site(u)]
    assert not offenders, "\n".join(offenders)


def test_no_inline_script_names_another_host(site: Path) -> None:
    # A script can fetch or import what no src attribute shows (nbconvert's Mermaid loader did).
    offenders: list[str] = []
    for page in _pages(site):
        for script in re.findall(r"<script\b[^>]*>(.*?)</script>", page.read_text("utf-8"), re.S):
            hosts = re.findall(r"""["'`]((?:https?:)?//[^"'`\s]+)""", script)
            offenders += [f"{page.relative_to(site)}: {url}" for url in hosts]
    assert not offenders, "\n".join(offenders)


def test_no_stylesheet_imports_from_another_host(site: Path) -> None:
    offenders: list[str] = []
    for sheet in sorted(site.rglob("*.css")):
        text = sheet.read_text(encoding="utf-8")
        urls = re.findall(r"""(?:url\(|@import\s+)["']?([^"')\s]+)""", text)
        offenders += [f"{sheet.relative_to(site)}: {u}" for u in urls if _is_off_site(u)]
    assert not offenders, "\n".join(offenders)


def test_math_is_rendered_to_mathml(site: Path) -> None:
    for page in _pages(site):
        html = page.read_text(encoding="utf-8")
        text_only = re.sub(r"<(script|pre|code)\b.*?</\1>", "", html, flags=re.DOTALL)
        assert "\\(" not in text_only, f"raw inline LaTeX left in {page.relative_to(site)}"
        assert "\\[" not in text_only, f"raw display LaTeX left in {page.relative_to(site)}"
        # Notebook pages keep $...$ in their Markdown cells unless the build renders it.
        prose = re.sub(
            r"<[^>]*>", " ", re.sub(r"<(style)\b.*?</\1>", "", text_only, flags=re.DOTALL)
        )
        leftover = re.findall(r"\$\$|\$[^\s$][^$\n]*[^\s\\]\$(?!\d)", prose)
        assert not leftover, f"raw $-math left in {page.relative_to(site)}: {leftover[:3]}"
    home = (site / "index.html").read_text(encoding="utf-8")
    assert home.count("<math") >= 5
    notebook = (site / "notebooks" / "quickstart" / "index.html").read_text(encoding="utf-8")
    assert notebook.count("<math") >= 3
    assert "x-mathjax-config" not in notebook
    assert 'display="block"' in home


def test_home_figure_is_drawn_by_the_build(site: Path) -> None:
    svg = (site / "figures" / "gradient-bound.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    # Text is drawn as paths: the figure needs no font from anywhere.
    assert "@font-face" not in svg
    assert not re.search(r"""(?:href|src)=["'](https?:)?//""", svg)
    home = (site / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<img alt="[^"]{20,}" src="figures/gradient-bound.svg"', home)


def test_home_table_holds_the_computed_bounds(site: Path) -> None:
    home = (site / "index.html").read_text(encoding="utf-8")
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", home)
    for depth in (5, 10):
        for value in vangrad.gradient_bound(depth):
            assert f"{value:.3e}" in cells


def test_search_index_is_built_locally(site: Path) -> None:
    index = site / "search" / "search_index.json"
    assert index.is_file()
    assert "sigmoid" in index.read_text(encoding="utf-8").lower()
