"""MkDocs hook: under `mkdocs serve`, a page whose sources are unchanged is not converted again.

A rebuild converts every page from Markdown, and mkdocstrings renders the API pages
(`::: vangrad.module` blocks) from vangrad's docstrings: together most of what a contributor
waits for after saving one sentence. Under `mkdocs serve` only (`mkdocs build`, and so CI and
the published site, always convert everything), the hook keeps what converting each Markdown page
produced: its HTML, table of contents and title, the anchors mkdocs validates links against,
and the anchors it registered with mkdocs-autorefs (for `vangrad.simulate` and every heading).
A rebuild with the same key puts these back instead, so that links into and out of the page are
still checked and still resolve. The key hashes the page's path and Markdown, the files it
includes (`--8<--`), the site's list of files, vangrad's source, the pinned dependencies, the
hooks and `mkdocs.yml`; a page whose conversion
logged a warning is never kept, so a broken link keeps failing the strict build.

The figures, computed numbers and notebook pages have caches of their own; the hooks that work
on the converted HTML (MathML, for one) run on a kept page as on a fresh one.

What a kept page lacks: mkdocstrings' inventory (`objects.inv`) of a serve build omits its
objects, which nothing in the site reads.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

try:  # as mkdocs loads a hook: from this folder
    from _build_inputs import code_digest
except ImportError:  # as the tests import it, from the checkout's root
    from hooks._build_inputs import code_digest

log = logging.getLogger("mkdocs.hooks.kept_pages")
ROOT = Path(__file__).resolve().parent.parent
Anchor = tuple[str, str | None, str | None, bool]  # autorefs' identifier, anchor, title, primary
_INCLUDE = re.compile(r'--8<--\s+"(?P<path>[^":]+)')


@dataclass
class _Kept:
    html: str
    toc: Any
    title: str | None
    present_anchor_ids: set[str] | None
    links_to_anchors: dict[str, dict[str, str]] | None  # by the linked file's src_uri
    anchors: list[Anchor] = field(default_factory=list)


class _Warnings(logging.Handler):
    """Counts mkdocs' warnings, so that a page whose conversion warned is not kept."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


_serving = [False]
_warnings = _Warnings()
_kept: dict[str, _Kept] = {}  # by key; one process serves, so memory is enough
_build: dict[str, Any] = {}  # this build's digest, autorefs' own register_anchor, the recording
_reused: list[str] = []  # this build's kept pages


def on_startup(*, command: str, dirty: bool) -> None:
    """Remember whether this is `mkdocs serve`, the one command that keeps pages."""
    _serving[0] = command == "serve"
    if _serving[0] and _warnings not in logging.getLogger("mkdocs").handlers:
        logging.getLogger("mkdocs").addHandler(_warnings)


def _recording(register: Callable[..., None]) -> Callable[..., None]:
    """The autorefs plugin's `register_anchor`, also noting the anchors of the page converting."""

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
            recording[2].append((identifier, anchor, title, primary))
        register(page, identifier, anchor, title=title, primary=primary)

    return register_anchor


def on_config(config: Any, **_: Any) -> Any:
    """Under serve: hash what every page depends on, and listen to the anchors pages register."""
    _build.clear()
    _reused.clear()
    if not _serving[0]:
        return config
    digest = code_digest(Path(__file__))
    digest.update(Path(config.config_file_path).read_bytes())
    for path in sorted((ROOT / "hooks").glob("*.py")):
        digest.update(path.read_bytes())
    _build["digest"] = digest
    autorefs = config.plugins.get("autorefs")
    if autorefs is not None:
        _build["register"] = autorefs.register_anchor
        autorefs.register_anchor = _recording(autorefs.register_anchor)
    return config


def on_files(files: Any, **_: Any) -> Any:
    """Add the site's list of files to the key: a link's target may appear or go."""
    if "digest" in _build:
        digest = _build.pop("digest").copy()
        digest.update("\n".join(sorted(f.src_uri for f in files)).encode())
        _build["files_digest"] = digest.hexdigest()
    return files


@event_priority(100)  # before the other hooks' Markdown: a kept page needs none of it
def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """A kept page skips its conversion; any other page is recorded as it converts."""
    if "files_digest" not in _build or not page.file.src_uri.endswith(".md"):
        return markdown
    digest = hashlib.sha256((_build["files_digest"] + page.file.src_uri + markdown).encode())
    for included in _INCLUDE.findall(markdown):  # pymdownx.snippets reads these as it converts
        path = ROOT / included
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    key = digest.hexdigest()
    page.vangrad_kept_key = key
    if key in _kept:
        _reused.append(page.file.src_uri)
        return ""
    _build["recording"] = (page.url, _warnings.count, [])
    return markdown


@event_priority(100)  # before autorefs reads the page's table of contents
def on_page_content(html: str, page: Any, files: Any, **_: Any) -> str:
    """Put a kept page back with its anchors, or keep the page just converted."""
    key = getattr(page, "vangrad_kept_key", None)
    if key is None:
        return html
    recording = _build.pop("recording", None)
    if recording is None:  # kept
        kept = _kept[key]
        page.toc, page._title_from_render = kept.toc, kept.title
        page.present_anchor_ids = kept.present_anchor_ids
        if kept.links_to_anchors is not None:
            page.links_to_anchors = {
                files.get_file_from_path(uri): links for uri, links in kept.links_to_anchors.items()
            }
        register = _build.get("register")
        for identifier, anchor, title, primary in kept.anchors if register else ():
            register(page, identifier, anchor, title=title, primary=primary)
        return kept.html
    _, warnings_before, anchors = recording
    if _warnings.count == warnings_before:
        if len(_kept) > 200:  # pages since edited
            _kept.clear()
        links = page.links_to_anchors
        _kept[key] = _Kept(
            html,
            page.toc,
            page._title_from_render,
            page.present_anchor_ids,
            None if links is None else {f.src_uri: dict(a) for f, a in links.items()},
            anchors,
        )
    return html


def on_post_build(**_: Any) -> None:
    """Say how many pages were put back rather than converted."""
    if _reused:
        log.info("Pages unchanged since they were last converted: %d, kept", len(_reused))
        log.debug("Kept: %s", ", ".join(_reused))
