r"""MkDocs hook: render every formula to MathML while the site builds.

`pymdownx.arithmatex` (in generic mode) leaves `\(...\)` and `\[...\]` inside
`<span class="arithmatex">` and `<div class="arithmatex">`. Browsers display MathML natively, so
converting those here means a page needs no math script, and therefore no request to a CDN.
Notebook pages (mkdocs-jupyter) keep `$...$` and `$$...$$` as text in their Markdown cells and
bring a MathJax loader of their own; the hook converts the first and removes the second.
A formula that latex2mathml cannot convert fails the build with the page and the formula named.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

_ARITHMATEX = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])"
    r"\s*</(?P=tag)>",
    re.DOTALL,
)


def latex_to_mathml(latex: str, *, display: bool) -> str:
    """Convert one LaTeX formula (without delimiters) to a `<math>` element."""
    mathml = convert(latex.strip(), display="block" if display else "inline")
    # Keep the source as an annotation-free attribute: screen readers use the MathML itself,
    # and a reader who copies the formula's alt text gets the LaTeX back.
    return mathml.replace("<math ", f'<math alttext="{html.escape(latex.strip())}" ', 1)


# Notebook Markdown cells: display math first, so `$$` is never read as two inline delimiters.
_DOLLARS = re.compile(
    r"\$\$(?P<block>.+?)\$\$|(?<![\\$])\$(?P<inline>[^$\n]+?)(?<!\\)\$(?!\$)", re.DOTALL
)
# Where a dollar sign is code or script, not mathematics.
_VERBATIM = re.compile(r"(<(pre|code|script|style)\b.*?</\2>)", re.DOTALL | re.IGNORECASE)
_NOTEBOOK_MATHJAX = re.compile(
    r'<script src="">\s*</script>\s*(?:<!-- MathJax configuration -->\s*)?'
    r'<script type="text/x-mathjax-config">.*?</script>',
    re.DOTALL,
)


def _mathml_or_fail(latex: str, *, display: bool, where: str) -> str:
    try:
        return latex_to_mathml(latex, display=display)
    except Exception as error:  # latex2mathml raises many exception types
        raise PluginError(f"{where}: cannot render the formula {latex!r}: {error}") from error


def render_notebook_math(content: str, *, where: str) -> str:
    """Convert `$...$` and `$$...$$` outside code to MathML and drop the MathJax loader."""
    content, removed = _NOTEBOOK_MATHJAX.subn("", content)
    if removed == 0 and "x-mathjax-config" in content:
        raise PluginError(f"{where}: the notebook's MathJax loader changed shape; update the hook")

    def replace(match: re.Match[str]) -> str:
        display = match.group("block") is not None
        latex = html.unescape(match.group("block") if display else match.group("inline"))
        return _mathml_or_fail(latex, display=display, where=where)

    parts = _VERBATIM.split(content)
    # split() with two groups yields [text, verbatim, tag-name, text, verbatim, tag-name, ...]
    for i in range(0, len(parts), 3):
        parts[i] = _DOLLARS.sub(replace, parts[i])
    return "".join(part for i, part in enumerate(parts) if i % 3 != 2)


def render_math(content: str, *, where: str) -> str:
    """Replace every arithmatex span or div in `content` by MathML."""

    def replace(match: re.Match[str]) -> str:
        display = match.group("block") is not None
        latex = html.unescape(match.group("block") if display else match.group("inline"))
        mathml = _mathml_or_fail(latex, display=display, where=where)
        tag = "div" if display else "span"
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _ARITHMATEX.sub(replace, content)


def on_page_content(html_content: str, page: Any, **_: Any) -> str:
    """Turn the page's formulas into MathML before the theme wraps the page."""
    where = page.file.src_uri
    if where.endswith((".ipynb", ".py")):
        return render_notebook_math(html_content, where=where)
    return render_math(html_content, where=where)
