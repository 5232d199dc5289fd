"""MkDocs hook: drop the indentation the theme's templates write at the start of every line.

Material's templates are indented for their authors, and the indentation reaches every page:
about 8 KB of spaces on each, 18 to 25 KB on the API pages, in the bytes a first visit loads.
Outside `<pre>`, `<code>`, `<textarea>`, `<script>` and `<style>`, a browser collapses a line
break and the spaces after it into one space, so a line break alone renders the same. Inside
them, where spaces are the content, nothing is touched.
"""

from __future__ import annotations

import re
from typing import Any

# split() with two groups gives [markup, verbatim element, its tag name, markup, ...].
_VERBATIM = re.compile(
    r"(<(pre|code|textarea|script|style)\b.*?</\2\s*>)", re.DOTALL | re.IGNORECASE
)
_INDENTATION = re.compile(r"\n[ \t]+")


def drop_indentation(html: str) -> str:
    """`html` with the spaces and tabs after each line break removed, outside verbatim elements."""
    parts = _VERBATIM.split(html)
    for i in range(0, len(parts), 3):
        parts[i] = _INDENTATION.sub("\n", parts[i])
    return "".join(part for i, part in enumerate(parts) if i % 3 != 2)


def on_post_page(output: str, **_: Any) -> str:
    """Every page, as it is written."""
    return drop_indentation(output)
