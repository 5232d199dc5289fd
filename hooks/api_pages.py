"""MkDocs hook: under `mkdocs serve`, an API page whose sources are unchanged is not rendered.

mkdocstrings renders the API pages (`::: vangrad.module` blocks) from vangrad's docstrings,
which takes about a second of every rebuild: most of what a contributor waits for after saving a
sentence elsewhere. Under `mkdocs serve` only (`mkdocs build`, and so CI and the published site,
always render them), the hook keeps each API page as it was rendered: its HTML, its table of
contents, and the anchors that rendering registered with mkdocs-autorefs (for `vangrad.simulate`
and every other object and heading on it). A later rebuild whose key is unchanged puts the page
back and registers its anchors again, so that the other pages' links into it still resolve;
its key hashes the page's Markdown, vangrad's source, the hooks and `mkdocs.yml`.

What a kept page lacks: mkdocstrings' inventory (`objects.inv`) of a serve build omits its
objects, which nothing in the site reads.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

try:  # as mkdocs loads a hook: from this folder
    from _build_inputs import code_digest
except ImportError:  # as the tests import it, from the checkout's root
    from hooks._build_inputs import code_digest

log = logging.getLogger("mkdocs.hooks.api_pages")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class _Kept:
    html: str
    toc: Any
    anchors: list[tuple[str, str | None, str | None, bool]] = field(default_factory=list)


_serving = [False]
_kept: dict[str, _Kept] = {}  # by key; one process serves, so memory is enough
_build: dict[str, Any] = {}  # this build's: "digest", "register", "recording", "reused"


def on_startup(*, command: str, dirty: bool) -> None:
    """Remember whether this is `mkdocs serve`, the one command that reuses API pages."""
    _serving[0] = command == "serve"


def _is_api_page(markdown: str) -> bool:
    return any(line.startswith("::: ") for line in markdown.splitlines())


def _without_autodoc(markdown: str) -> str:
    """The page's own Markdown, less its `::: identifier` blocks and their indented options.

    A kept page still converts this (it is quick), so that its title and the rest that mkdocs
    takes from the conversion come out as before; its HTML is then the kept one.
    """
    kept, in_block = [], False
    for line in markdown.splitlines():
        if line.startswith("::: "):
            in_block = True
        elif in_block and (not line.strip() or line.startswith((" ", "\t"))):
            continue
        else:
            in_block = False
            kept.append(line)
    return "\n".join(kept) + "\n"


def _recording(register: Callable[..., None]) -> Callable[..., None]:
    """The autorefs plugin's `register_anchor`, also noting the recorded page's anchors."""

    def register_anchor(
        page: Any,
        identifier: str,
        anchor: str | None = None,
        *,
        title: str | None = None,
        primary: bool = True,
    ) -> None:
        recording = _build.get("recording")
        if recording is not None and getattr(page, "url", None) == recording[0]:
            recording[1].append((identifier, anchor, title, primary))
        register(page, identifier, anchor, title=title, primary=primary)

    return register_anchor


def on_config(config: Any, **_: Any) -> Any:
    """Under serve: hash this build's inputs, and listen to the anchors pages register."""
    _build.clear()
    autorefs = config.plugins.get("autorefs")
    if not _serving[0] or autorefs is None:
        return config
    digest = code_digest(Path(__file__))
    digest.update(Path(config.config_file_path).read_bytes())
    for path in sorted((ROOT / "hooks").glob("*.py")):
        digest.update(path.read_bytes())
    _build["digest"] = digest.hexdigest()
    _build["register"] = autorefs.register_anchor
    autorefs.register_anchor = _recording(autorefs.register_anchor)
    return config


@event_priority(100)  # before the other hooks' Markdown: a kept page needs none of it
def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """A kept API page skips its rendering; any other API page is recorded as it renders."""
    if "digest" not in _build or not _is_api_page(markdown):
        return markdown
    key = hashlib.sha256((_build["digest"] + markdown).encode()).hexdigest()
    page.vangrad_api_key = key
    if key in _kept:
        log.info("API page unchanged since it was last rendered: %s", page.file.src_uri)
        return _without_autodoc(markdown)
    _build["recording"] = (page.url, [])
    return markdown


@event_priority(100)  # before autorefs reads the page's table of contents
def on_page_content(html: str, page: Any, **_: Any) -> str:
    """Put a kept page back with its anchors, or keep the page just rendered."""
    key = getattr(page, "vangrad_api_key", None)
    if key is None:
        return html
    kept = _kept.get(key)
    if kept is not None and "recording" not in _build:
        page.toc = kept.toc
        for identifier, anchor, title, primary in kept.anchors:
            _build["register"](page, identifier, anchor, title=title, primary=primary)
        return kept.html
    _, anchors = _build.pop("recording")
    if len(_kept) > 32:  # pages since edited
        _kept.clear()
    _kept[key] = _Kept(html, page.toc, anchors)
    return html
