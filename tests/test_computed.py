"""The prose's computed numbers (hooks/computed.py): found, bound to their snippet, rendered."""

from __future__ import annotations

import pytest

from hooks import computed

PAGE = """# A page

Before any code: {{ not_a_reference }} would fail, so this line has none.

```py
import numpy as np

slopes = np.array([0.1779, 0.2036, 0.2308])
```

The slopes run from {{ slopes.min():.2f }} to {{ slopes.max():.2f }}; `{{ in code }}` is code.

```bash
echo {{ not prose }}
```

```py test="skip: draws on a display"
grad = 99.0
```

```py
grad = -8.5123
```

It falls by {{ 10^grad:.1f }} at the input.

![A curve that ends at {{ 10^grad:.1f }},
two lines of alt text](figures/x.svg)
"""


def _page(markdown: str = PAGE.replace("{{ not_a_reference }}", "(none)")):
    return computed.read_page(markdown, where="page.md")


def test_references_bind_to_the_last_runnable_snippet_above_them() -> None:
    page = _page()
    assert [s.source.splitlines()[-1] for s in page.snippets] == [
        "slopes = np.array([0.1779, 0.2036, 0.2308])",
        "grad = -8.5123",
    ]
    # The blocks as a reader counts them: the bash and the skipped one count too.
    assert [s.block for s in page.snippets] == [1, 4]
    assert [(r.content, r.snippet, r.in_alt_text) for r in page.references] == [
        ("slopes.min():.2f", 0, False),
        ("slopes.max():.2f", 0, False),
        ("10^grad:.1f", 1, False),
        ("10^grad:.1f", 1, True),
    ]


def test_a_reference_with_no_snippet_above_fails_naming_its_line() -> None:
    with pytest.raises(ValueError, match=r"page\.md:3: \{\{ not_a_reference \}\} has no snippet"):
        computed.read_page(PAGE, where="page.md")


def test_values_are_computed_by_the_snippets_and_rendered_with_their_origin() -> None:
    page = _page()
    values = computed.compute(page, where="page.md")
    assert values == ["0.18", "0.23", "-8.5", "-8.5"]
    markdown = PAGE.replace("{{ not_a_reference }}", "(none)")
    out = computed.render(markdown, "page.md", page, values)
    assert (
        '<span class="vg-computed" tabindex="0" data-computed="code block 1 on this page: '
        'slopes.min():.2f" data-computed-source="docs/page.md:5">0.18</span>'
    ) in out
    assert ">10<sup>-8.5</sup></span> at the input" in out
    # Plain in alt text; the image's attributes say where it came from.
    assert (
        "![A curve that ends at 10^-8.5,\ntwo lines of alt text](figures/x.svg)"
        '{: data-computed="code block 4 on this page: 10^grad:.1f" '
        'data-computed-values="10^-8.5" }'
    ) in out
    assert "`{{ in code }}`" in out
    assert "echo {{ not prose }}" in out


def test_a_failing_expression_names_the_page_the_snippet_and_the_expression() -> None:
    markdown = "```py\nx = 1\n```\n\nIt is {{ y + 1:.1f }}.\n"
    page = computed.read_page(markdown, where="p.md")
    with pytest.raises(ValueError, match=r"p\.md, after the snippet at line 1: \{\{ y \+ 1:\.1f"):
        computed.compute(page, where="p.md")


def test_a_prose_edit_keeps_the_cache_key_and_a_code_edit_changes_it() -> None:
    base = "```py\nx = 2\n```\n\nTwice: {{ 2 * x }}.\n"
    key = computed.page_key(b"code", computed.read_page(base, where="p.md"))
    reworded = base.replace("Twice:", "Two times it is")
    assert computed.page_key(b"code", computed.read_page(reworded, where="p.md")) == key
    for changed in (base.replace("x = 2", "x = 3"), base.replace("2 * x", "3 * x")):
        assert computed.page_key(b"code", computed.read_page(changed, where="p.md")) != key
    assert computed.page_key(b"other code", computed.read_page(base, where="p.md")) != key


def test_brackets_in_an_expression_reach_neither_links_nor_the_alt_text_end() -> None:
    markdown = (
        '```py\nx = {"a": {"b": 0.5}}\n```\n\n'
        'See {{ x["a"]["b"] }}.\n\n![Half: {{ x["a"]["b"] }}.](f.svg)\n'
    )
    page = computed.read_page(markdown, where="p.md")
    assert [r.in_alt_text for r in page.references] == [False, True]
    out = computed.render(markdown, "p.md", page, computed.compute(page, where="p.md"))
    assert 'data-computed="code block 1 on this page: x&#91;&quot;a&quot;&#93;' in out
    assert "![Half: 0.5.](f.svg){: " in out


def test_only_the_snippets_a_reference_needs_are_run() -> None:
    markdown = "```py\nraise SystemExit('never run')\n```\n\n```py\nx = 4\n```\n\n{{ x }}\n"
    page = computed.read_page(markdown, where="p.md")
    assert computed.compute(page, where="p.md") == ["4"]


def test_braces_in_math_are_tex_and_a_reference_split_over_two_lines_fails() -> None:
    markdown = "```py\nx = 1\n```\n\n$$\na_{{b}}\n$$\n\nand $c_{{d}}$ and {{ x }}.\n"
    assert [r.content for r in computed.read_page(markdown, where="p.md").references] == ["x"]
    split = "```py\nx = 1\n```\n\nIt is {{ x *\n3 }}.\n"
    with pytest.raises(ValueError, match=r"p\.md:5: an unclosed '\{\{'"):
        computed.read_page(split, where="p.md")


def test_values_are_text_and_expressions_may_hold_both_quotes_and_colons() -> None:
    markdown = (
        "```py\nd = {'a': 0.5}\ntag = '<b>'\nxs = [1, 2, 3]\n```\n\n"
        """{{ d['a'] + len("ab"):.2f }}, {{ xs[1:]}}, {{ tag }}.\n"""
    )
    page = computed.read_page(markdown, where="p.md")
    values = computed.compute(page, where="p.md")
    assert values == ["2.50", "[2, 3]", "<b>"]
    assert ">&lt;b&gt;</span>" in computed.render(markdown, "p.md", page, values)


def test_an_image_with_attributes_of_its_own_keeps_them() -> None:
    markdown = "```py\nx = 2\n```\n\n![Two: {{ x }}.](f.svg){ width=300 }\n"
    page = computed.read_page(markdown, where="p.md")
    out = computed.render(markdown, "p.md", page, computed.compute(page, where="p.md"))
    assert out.endswith(
        '![Two: 2.](f.svg){ width=300  data-computed="code block 1 on this page: x" '
        'data-computed-values="2" }\n'
    )


def test_a_snippet_cannot_change_the_process_for_the_next_page() -> None:
    import os

    markdown = "```py\nimport os\nos.environ['VANGRAD_ENGINE'] = 'fast'\nx = 1\n```\n\n{{ x }}\n"
    before = os.environ.get("VANGRAD_ENGINE")
    computed.compute(computed.read_page(markdown, where="p.md"), where="p.md")
    assert os.environ.get("VANGRAD_ENGINE") == before
