"""Cut JupyterLab's stylesheet down to what one static notebook page can use.

nbconvert inlines all of JupyterLab's CSS, about 570 KB, into every notebook page: rules for
menus, widgets and editors that a static page never shows, and some two thousand custom
properties (`--jp-...`) that those rules read. Two passes keep what the page needs:

- `prune_css` drops every rule that names a class the page's markup lacks (JupyterLab's, and
  Pygments' and nbconvert's own: an ANSI colour no output uses, a token no cell contains);
- `drop_custom_properties` then drops every custom property that no remaining declaration and
  no style in the markup reads, directly or through another property (`used_custom_properties`).

Rules and properties of other stylesheets (Material's, the site's own) are never touched, and in
this CSS a rule naming one of Material's classes is kept for it: Material's scripts add some of
them to the page as it loads (the wrapper of a wide table, a copy button).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

_CLASS = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")
# Arguments of :not() and friends name classes a matching element need not have.
_PSEUDO_ARGUMENT = re.compile(r":(?:not|is|where|has)\((?:[^()]|\([^()]*\))*\)")
# Pygments' rules open with a comment naming the token ("/* Keyword.Namespace */"): not a class.
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# Material's classes, which its scripts may add after the page has loaded.
_ADDED_AS_THE_PAGE_LOADS = ("md-",)
_GROUPING_RULES = ("@media", "@supports", "@layer")
_READS = re.compile(r"var\(\s*(--[\w-]+)")


def _statements(css: str) -> list[tuple[str, str | None]]:
    """Split `css` into its top-level statements: `(prelude, body)`, body `None` for `@x ...;`."""
    statements: list[tuple[str, str | None]] = []
    i, n = 0, len(css)
    while i < n:
        brace, semicolon = css.find("{", i), css.find(";", i)
        if brace == -1 or -1 < semicolon < brace:
            end = n if semicolon == -1 else semicolon + 1
            statements.append((css[i:end], None))
            i = end
            continue
        depth, j = 1, brace + 1
        while depth and j < n:
            depth += {"{": 1, "}": -1}.get(css[j], 0)
            j += 1
        statements.append((css[i:brace].strip(), css[brace + 1 : j - 1]))
        i = j
    return statements


def _selects_something(selectors: str, classes: set[str]) -> bool:
    for selector in _COMMENT.sub("", selectors).split(","):
        named = _CLASS.findall(_PSEUDO_ARGUMENT.sub("", selector))
        if all(name in classes or name.startswith(_ADDED_AS_THE_PAGE_LOADS) for name in named):
            return True
    return False


def _rewrite(css: str, rule: Callable[[str, str], str | None]) -> str:
    """Rewrite each style rule's body as `rule(selectors, body)`, or drop the rule for None.

    Rules inside @media and friends too, which go when left empty; other at-rules (@keyframes,
    @font-face, @charset) stay as they are.
    """
    kept: list[str] = []
    for prelude, body in _statements(css):
        if body is None:
            kept.append(prelude)
        elif prelude.startswith(_GROUPING_RULES):
            inner = _rewrite(body, rule)
            if inner:
                kept.append(f"{prelude}{{{inner}}}")
        elif prelude.startswith("@"):
            kept.append(f"{prelude}{{{body}}}")
        elif (new := rule(prelude, body)) is not None:
            kept.append(f"{prelude}{{{new}}}")
    return "".join(kept)


def prune_css(css: str, classes: set[str]) -> str:
    """Drop the rules of `css` that name a class missing from `classes` (Material's excepted)."""
    return _rewrite(
        css, lambda selectors, body: body if _selects_something(selectors, classes) else None
    )


def _declarations(body: str) -> list[str]:
    """A rule's declarations: its body split at the semicolons outside quotes and brackets.

    A property's value can hold a data URL, `url("data:image/svg+xml;...")`.
    """
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(body):
        if quote:
            if char == quote and body[i - 1] != "\\":
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == ";" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [part for part in parts if part.strip()]


def _defined(declaration: str) -> str | None:
    """The custom property a declaration defines (`--jp-x: 1px` -> `--jp-x`), if any."""
    name, colon, _ = declaration.partition(":")
    name = name.strip()
    return name if colon and name.startswith("--") else None


def _rule_bodies(css: str) -> Iterator[str]:
    for prelude, body in _statements(css):
        if body is None:
            continue
        if prelude.startswith(_GROUPING_RULES):
            yield from _rule_bodies(body)
        elif not prelude.startswith("@"):
            yield body


def used_custom_properties(css: str, markup: str) -> set[str]:
    """The custom properties that `css`'s own declarations or `markup` read, transitively."""
    definitions: dict[str, list[str]] = {}
    used = set(_READS.findall(markup))
    for body in _rule_bodies(css):
        for declaration in _declarations(body):
            name = _defined(declaration)
            if name is None:
                used.update(_READS.findall(declaration))
            else:
                definitions.setdefault(name, []).append(declaration)
    pending = list(used)
    while pending:
        for definition in definitions.get(pending.pop(), []):
            for name in _READS.findall(definition):
                if name not in used:
                    used.add(name)
                    pending.append(name)
    return used


def drop_custom_properties(css: str, used: set[str]) -> str:
    """Drop the definitions of custom properties missing from `used`, and rules left empty."""

    def rule(_: str, body: str) -> str | None:
        kept = [d for d in _declarations(body) if _defined(d) is None or _defined(d) in used]
        return ";".join(kept) if kept else None

    return _rewrite(css, rule)
