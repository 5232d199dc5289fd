r"""MkDocs hook: render every formula to MathML while the site builds.

`pymdownx.arithmatex` (in generic mode) leaves `\(...\)` and `\[...\]` inside
`<span class="arithmatex">` and `<div class="arithmatex">`. Browsers display MathML natively, so
converting those here means a page needs no math script, and therefore no request to a CDN.
Notebook pages (mkdocs-jupyter) keep `$...$` and `$$...$$` as text in their Markdown cells and
bring a MathJax loader of their own; the hook converts the first and removes the second.
A formula that latex2mathml cannot convert fails the build with the page and the formula named.
"""

from __future__ import annotations

import functools
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


# latex2mathml writes a prime as a superscript (`<msup><mi>f</mi><mi>&#x02032;</mi></msup>`),
# but the prime glyph is already raised, so browsers draw it far above the letter. A plain
# operator after the letter is how it reads in print.
_PRIME = re.compile(r"<msup>(<mi>[^<]*</mi>)<mi>(&#x0203[234];)</mi></msup>")


@functools.cache  # the same formulas every rebuild under `mkdocs serve`, and across pages
def latex_to_mathml(latex: str, *, display: bool) -> str:
    """Convert one LaTeX formula (without delimiters) to a `<math>` element."""
    mathml = convert(latex.strip(), display="block" if display else "inline")
    mathml = _PRIME.sub(r'\1<mo lspace="0" rspace="0">\2</mo>', mathml)
    # Keep the source as an annotation-free attribute: screen readers use the MathML itself,
    # and a reader who copies the formula's alt text gets the LaTeX back.
    return mathml.replace("<math ", f'<math alttext="{html.escape(latex.strip())}" ', 1)


# Notebook Markdown cells: display math first, so `$$` is never read as two inline delimiters.
# Inline math follows pandoc's rule: no space just inside either `$`, and no digit right after
# the closing one, so "$5 and $10" stays text. It may wrap onto a second line, not a third.
_DOLLARS = re.compile(
    r"\$\$(?P<block>.+?)\$\$"
    r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]|\n(?!\n))*?)(?<![\s\\])\$(?![$\d])",
    re.DOTALL,
)
# Where a dollar sign is code, script or markup, not mathematics.
_VERBATIM = re.compile(
    r"(<(?:pre|code|script|style)\b.*?</(?:pre|code|script|style)>)", re.DOTALL | re.IGNORECASE
)
_TAG = re.compile(r"(<[^>]*>)")
_NOTEBOOK_MATHJAX = re.compile(
    r'<script src="">\s*</script>\s*(?:<!-- MathJax configuration -->\s*)?'
    r'<script type="text/x-mathjax-config">.*?</script>',
    re.DOTALL,
)


_UNKNOWN_COMMAND = re.compile(r">(\\[A-Za-z]+)<")


def _mathml_or_fail(latex: str, *, display: bool, where: str) -> str:
    try:
        mathml = latex_to_mathml(latex, display=display)
    except Exception as error:  # latex2mathml raises many exception types
        raise PluginError(f"{where}: cannot render the formula {latex!r}: {error}") from error
    # latex2mathml passes a command it does not know through as text; a reader would see it.
    unknown = _UNKNOWN_COMMAND.search(mathml)
    if unknown:
        raise PluginError(
            f"{where}: cannot render the formula {latex!r}: unknown command {unknown.group(1)}"
        )
    return mathml


def render_notebook_math(content: str, *, where: str) -> str:
    """Convert `$...$` and `$$...$$` outside code to MathML and drop the MathJax loader."""
    content, removed = _NOTEBOOK_MATHJAX.subn("", content)
    if removed == 0 and "x-mathjax-config" in content:
        raise PluginError(f"{where}: the notebook's MathJax loader changed shape; update the hook")

    def replace(match: re.Match[str]) -> str:
        display = match.group("block") is not None
        latex = html.unescape(match.group("block") if display else match.group("inline"))
        return _mathml_or_fail(latex, display=display, where=where)

    # split() with one group alternates [text, verbatim, text, ...]; within text, again
    # [text, tag, text, ...], so that a `$` inside an attribute is never touched.
    parts = _VERBATIM.split(content)
    for i in range(0, len(parts), 2):
        pieces = _TAG.split(parts[i])
        for j in range(0, len(pieces), 2):
            pieces[j] = _DOLLARS.sub(replace, pieces[j])
        parts[i] = "".join(pieces)
    return "".join(parts)


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
