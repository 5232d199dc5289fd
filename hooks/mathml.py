r"""MkDocs hook: render every formula to MathML while the site builds.

`pymdownx.arithmatex` (in generic mode) leaves `\(...\)` and `\[...\]` inside
`<span class="arithmatex">` and `<div class="arithmatex">`. Browsers display MathML natively, so
converting those here means a page needs no math script, and therefore no request to a CDN.
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


def render_math(content: str, *, where: str) -> str:
    """Replace every arithmatex span or div in `content` by MathML."""

    def replace(match: re.Match[str]) -> str:
        display = match.group("block") is not None
        latex = html.unescape(match.group("block") if display else match.group("inline"))
        try:
            mathml = latex_to_mathml(latex, display=display)
        except Exception as error:  # latex2mathml raises many exception types
            raise PluginError(f"{where}: cannot render the formula {latex!r}: {error}") from error
        tag = "div" if display else "span"
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _ARITHMATEX.sub(replace, content)


def on_page_content(html_content: str, page: Any, **_: Any) -> str:
    """Turn the page's formulas into MathML before the theme wraps the page."""
    return render_math(html_content, where=page.file.src_uri)
