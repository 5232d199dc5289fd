"""The build hooks' text transformations, on small inputs whose right answer is known."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

HOOKS = Path(__file__).resolve().parent.parent / "hooks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"hooks_{name}", HOOKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mathml = _load("mathml")
notebooks = _load("notebooks")


def test_arithmatex_spans_become_mathml() -> None:
    html = '<p>a <span class="arithmatex">\\(x &lt; 1\\)</span></p>'
    out = mathml.render_math(html, where="page.md")
    assert "<math" in out
    assert 'alttext="x &lt; 1"' in out
    assert "\\(" not in out


def test_arithmatex_display_block() -> None:
    out = mathml.render_math('<div class="arithmatex">\\[\\frac{1}{4}\\]</div>', where="p.md")
    assert 'display="block"' in out
    assert "<mfrac>" in out


@pytest.mark.parametrize(
    ("html", "formulas"),
    [
        ("<p>$k$ and $0.25^k$</p>", 2),
        ("<p>$$\nx^2\n$$</p>", 1),
        ("<p>$x\n+ y$</p>", 1),  # inline math may wrap onto a second line
        ("<p>costs $5 and $10</p>", 0),  # prices, not mathematics
        ("<p>$ a $</p>", 0),  # spaces inside the delimiters: not math (pandoc's rule)
        ("<code>$x$</code><pre>$y$</pre>", 0),
        ('<a href="page$x$">link</a>', 0),  # never inside an attribute
    ],
)
def test_notebook_dollar_math(html: str, formulas: int) -> None:
    out = mathml.render_notebook_math(html, where="nb.py")
    assert out.count("<math") == formulas
    if formulas == 0:
        assert out == html


def test_a_prime_follows_its_letter_instead_of_floating_above_it() -> None:
    mathml = _load("mathml").latex_to_mathml("\\sigma'(z) + f''", display=False)
    assert "<msup>" not in mathml
    assert mathml.count('<mo lspace="0" rspace="0">') == 2
    assert "&#x02032;" in mathml  # the prime
    assert "&#x02033;" in mathml  # the double prime


def test_notebook_mathjax_loader_is_removed() -> None:
    page = (
        '<script src=""> </script>\n<!-- MathJax configuration -->\n'
        '<script type="text/x-mathjax-config">MathJax.Hub.Config({});</script><p>$x$</p>'
    )
    out = mathml.render_notebook_math(page, where="nb.py")
    assert "mathjax" not in out.lower().replace('xmlns="http://www.w3.org/1998/math/mathml"', "")
    assert out.count("<math") == 1


@pytest.mark.parametrize("latex", ["x^", "\\left( x", "\\badcommand{x}"])
def test_bad_latex_fails_the_build_naming_the_page(latex: str) -> None:
    with pytest.raises(PluginError, match=r"nb\.py: cannot render the formula"):
        mathml.render_notebook_math(f"<p>${latex}$</p>", where="nb.py")
    html = f'<span class="arithmatex">\\({latex}\\)</span>'
    with pytest.raises(PluginError, match=r"page\.md: cannot render the formula"):
        mathml.render_math(html, where="page.md")


def test_notebook_figure_gets_its_alt_comment() -> None:
    cell = (
        '<div class="jp-Cell jp-CodeCell"><span class="c1"># alt: A line that falls.</span>'
        f"<img {notebooks.PLACEHOLDER} src='data:'></div>"
    )
    out = notebooks.describe_notebook_figures(cell, where="nb.py")
    assert 'alt="A line that falls."' in out
    assert notebooks.PLACEHOLDER not in out


def test_notebook_alt_comment_continues_on_indented_comment_lines() -> None:
    cell = (
        '<div class="jp-Cell jp-CodeCell"><pre><span class="c1"># alt: A line that falls</span>\n'
        '<span class="c1">#   steeply &amp; then levels off.</span>\n'
        '<span class="c1"># An ordinary comment.</span>\n'
        f"<img {notebooks.PLACEHOLDER} src='data:'></div>"
    )
    out = notebooks.describe_notebook_figures(cell, where="nb.py")
    assert 'alt="A line that falls steeply &amp; then levels off."' in out
    # The reader sees the description as alt text, not as code; other comments stay.
    assert "# alt:" not in out
    assert "steeply" not in out.split("<img", 1)[0]
    assert "# An ordinary comment." in out


# One code cell as mkdocs-jupyter 0.26 writes it, with the scripts it puts before the cells.
_JUPYTER_CELL = """<script>
(function (global, factory) { global.ClipboardCopyElement = factory(); }(this, function () {}));
</script>
<script>
      document.addEventListener('clipboard-copy', function(event) {})
</script>
<script type="module">
  document.addEventListener("DOMContentLoaded", async () => {
    const diagrams = document.querySelectorAll(".jp-Mermaid > pre.mermaid");
    await import("https://cdn.example/mermaid.mjs");
  });
</script>
<div class="CodeMirror cm-s-jupyter">
<div class="zeroclipboard-container">
<clipboard-copy ,="" aria-label="Copy to Clipboard" for="cell-1">
<div>
<span class="notice" hidden="">Copied!</span>
<svg aria-hidden="true" class="clipboard-copy-icon" height="20" viewbox="0 0 16 16" width="20">
<path d="M0 6.75z" fill="currentColor" fill-rule="evenodd"></path>
</svg>
</div>
</clipboard-copy>
</div>
<div class="highlight-ipynb hl-python"><pre><span></span><span class="n">label</span> <span \
class="o">=</span> <span class="s2">"bound $0.25^k$"</span>
</pre></div>
<div class="clipboard-copy-txt" id="cell-1">label = "bound <math>...</math>"</div>
</div>"""


def test_notebook_copy_buttons_copy_the_shown_code_with_materials_clipboard() -> None:
    out = notebooks.lighten_copy_buttons(_JUPYTER_CELL, where="nb.py")
    for gone in ("clipboard-copy-txt", "<clipboard-copy", "<svg", "ClipboardCopyElement", "cdn."):
        assert gone not in out, gone
    assert '<pre id="cell-1"><span></span><span class="n">label' in out
    assert (
        '<button class="vg-cell-copy" type="button" title="Copy to clipboard" '
        'data-clipboard-target="#cell-1"><span aria-hidden="true" class="clipboard-copy-icon">'
    ) in out


def test_notebook_copy_buttons_of_another_shape_fail_the_build() -> None:
    with pytest.raises(PluginError, match="copy buttons changed shape"):
        notebooks.lighten_copy_buttons(_JUPYTER_CELL.replace("<div>\n<span", "<span"), where="nb")
    with pytest.raises(PluginError, match="Mermaid diagrams need a renderer"):
        notebooks.lighten_copy_buttons(
            _JUPYTER_CELL + '<div class="jp-Mermaid"><pre class="mermaid">a</pre></div>', where="nb"
        )


def test_template_indentation_is_dropped_outside_verbatim_elements() -> None:
    indentation = _load("indentation")
    html = (
        "<nav>\n    <ul>\n\t<li>a</li>\n  </ul>\n</nav>\n"
        "<pre>\n    code\n</pre>\n  <p><code>a\n   b</code></p>\n"
        "<textarea>\n  t</textarea>\n  <script>\n  let s = `\n  x`;\n</script>"
        "<style>\n  p{}\n</style >\n  <PRE>\n  upper</PRE>"
    )
    assert indentation.drop_indentation(html) == (
        "<nav>\n<ul>\n<li>a</li>\n</ul>\n</nav>\n"
        "<pre>\n    code\n</pre>\n<p><code>a\n   b</code></p>\n"
        "<textarea>\n  t</textarea>\n<script>\n  let s = `\n  x`;\n</script>"
        "<style>\n  p{}\n</style >\n<PRE>\n  upper</PRE>"
    )


def test_notebook_figure_without_alt_comment_fails_the_build() -> None:
    cell = f'<div class="jp-Cell jp-CodeCell"><img {notebooks.PLACEHOLDER} src="data:"></div>'
    with pytest.raises(PluginError, match=r"nb\.py: a code cell draws a figure"):
        notebooks.describe_notebook_figures(cell, where="nb.py")


@pytest.mark.slow
def test_figures_are_deterministic(
    built_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second drawing, in this process, matches the build's byte for byte.

    A sample stands for all: determinism comes from the shared SVG settings and the seeded
    simulations, and redrawing every figure would double the build's drawing time.
    """
    # The engine the build drew with (hooks/engine.py), which is part of the cache key.
    monkeypatch.setenv("VANGRAD_ENGINE", os.environ.get("VANGRAD_ENGINE") or _site_engine())
    figures = _load("figures")
    cached = figures.CACHE / figures._source_key()
    assert cached.is_dir(), "the site build should have drawn the figures"
    sample = {"gradient-bound", "deep-sigmoid-profiles", "tanh-sweep", "relu-family"}
    figures.render_all(tmp_path, names=sample)
    drawn = sorted(p.name for p in tmp_path.iterdir())
    assert drawn == sorted([*(f"{name}.svg" for name in sample), "gradient-bound.md"])
    for name in drawn:
        assert (tmp_path / name).read_bytes() == (cached / name).read_bytes(), name


def _site_engine() -> str:
    return _load("engine").SITE_ENGINE


def test_the_site_is_built_with_the_reference_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VANGRAD_ENGINE", raising=False)
    _load("engine").on_startup(command="build", dirty=False)
    assert os.environ["VANGRAD_ENGINE"] == "reference"
    monkeypatch.setenv("VANGRAD_ENGINE", "fast")  # a contributor's own choice wins
    _load("engine").on_startup(command="build", dirty=False)
    assert os.environ["VANGRAD_ENGINE"] == "fast"


def test_notebook_styles_keep_only_the_custom_properties_something_reads() -> None:
    css = (
        ":root{--jp-read: 1px;--jp-through: var(--jp-deep);--jp-deep: 2px;--jp-unread: 3px;"
        '--jp-icon: url("data:image/svg+xml;utf8,<svg/>");--jp-inline: 4px}'
        ".jp-Cell{margin:var(--jp-read) var(--jp-through)}"
        "@media print{:root{--jp-unread-too: 5px}}"
        "@keyframes spin{from{opacity:0}to{opacity:1}}"
    )
    page = f'<style>{css}</style><div class="jp-Cell" style="padding:var(--jp-inline)">x</div>'
    kept = notebooks.prune_notebook_styles(page)
    for name in ("--jp-read: 1px", "--jp-through", "--jp-deep: 2px", "--jp-inline", "@keyframes"):
        assert name in kept, name
    for name in ("--jp-unread", "--jp-icon", "@media print"):
        assert name not in kept, name


def test_notebook_styles_keep_only_rules_that_can_match() -> None:
    css = (
        '@charset "UTF-8";'
        ".jupyter-wrapper{--jp-x: 1px}"
        ".jupyter-wrapper .jp-Cell{margin:var(--jp-x)}"
        ".jupyter-wrapper .bp3-menu{color:red}"
        ".jupyter-wrapper .jp-Cell:not(.jp-mod-active),.jp-Missing{padding:0}"
        ".jp-Missing,.jp-OutputArea pre{font-size:1em}"
        ".md-typeset .jp-Missing{border:0}"
        ".md-typeset__scrollwrap .jp-Cell{overflow:auto}"
        "/* Keyword */\n.highlight .k{color:blue}"
        "/* Comment.Single */\n.highlight .c1{color:gray}"
        ".ansi-red-fg{color:red}"
        "@media (max-width: 600px){.jp-Cell{margin:1px}.jp-Missing{margin:2px}}"
        "@media print{.bp3-menu{display:none}}"
        "@keyframes spin{from{opacity:0}to{opacity:1}}"
    )
    page = (
        f"<style>{css}</style>"
        '<div class="jupyter-wrapper"><div class="jp-Cell"><div class="jp-OutputArea">'
        '<pre class="highlight"><span class="k">x</span></pre></div></div></div>'
    )
    kept = notebooks.prune_notebook_styles(page)
    for rule in (
        '@charset "UTF-8";',
        ".jupyter-wrapper{--jp-x: 1px}",
        ".jupyter-wrapper .jp-Cell{margin:var(--jp-x)}",
        ".jupyter-wrapper .jp-Cell:not(.jp-mod-active),.jp-Missing{padding:0}",
        ".jp-Missing,.jp-OutputArea pre{font-size:1em}",
        "/* Keyword */\n.highlight .k{color:blue}",
        ".md-typeset__scrollwrap .jp-Cell{overflow:auto}",  # Material adds the wrapper later
        "@media (max-width: 600px){.jp-Cell{margin:1px}}",
        "@keyframes spin{from{opacity:0}to{opacity:1}}",
    ):
        assert rule in kept, rule
    for gone in (
        ".bp3-menu",
        ".md-typeset .jp-Missing",
        "margin:2px",
        "@media print",
        ".c1",  # a Pygments token no cell holds
        ".ansi-red-fg",  # a colour no output uses
    ):
        assert gone not in kept, gone
    assert kept.endswith(page[page.index("</style>") :])


# Installed in the converting process and its kernels: any TCP socket that Python binds fails.
_NO_TCP = """
import socket

_bind = socket.socket.bind


def _refuse_tcp(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError("this test forbids TCP ports")
    return _bind(self, address)


socket.socket.bind = _refuse_tcp
"""


@pytest.mark.slow  # three kernels start
def test_notebook_kernels_need_no_tcp_port_and_a_dead_kernel_says_why(tmp_path: Path) -> None:
    """Concurrent kernels cannot race for ports (jupyter_client#154): they bind none.

    A kernel that dies reports its own error output in the build's error, which is the only
    place its reason appears.
    """
    import json
    import subprocess
    import sys

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_NO_TCP, encoding="utf-8")
    cells = {
        "one": "print(6 * 7)",
        "two": "print(6 * 9)",
        "dies": "import os\nos.write(2, b'the last words of a kernel\\n')\nos._exit(3)",
    }
    jobs = []
    for name, cell in cells.items():
        source = tmp_path / f"{name}.py"
        source.write_text(f"# %%\n{cell}\n", encoding="utf-8")
        options = {"execute": True, "kernel_name": "python3", "allow_errors": False}
        jobs.append([str(source), options, str(tmp_path / f"{name}.html")])
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    subprocess.run(
        [sys.executable, str(HOOKS / "notebooks.py"), json.dumps(jobs)],
        env=env,
        check=True,
        timeout=120,
    )
    assert "42" in (tmp_path / "one.html").read_text(encoding="utf-8")
    assert "54" in (tmp_path / "two.html").read_text(encoding="utf-8")
    error = (tmp_path / "dies.error").read_text(encoding="utf-8")
    assert "The kernel's error output:\nthe last words of a kernel" in error


_SERVE_TWICE = """
import logging, sys
from mkdocs.commands.build import build
from mkdocs.config import load_config

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
# As `mkdocs serve` does: on_startup once, then a fresh configuration for every build.
for run, command in enumerate(sys.argv[1:]):
    config = load_config("mkdocs.yml", site_dir=f"s{run}")
    if run == 0:
        config.plugins.on_startup(command=command, dirty=False)
    print(f"--- build {run}")
    build(config)
"""


@pytest.mark.slow
def test_under_serve_unchanged_pages_are_kept_and_links_between_them_still_resolve(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        "# Home\n\nMeasure with [`simulate`][vangrad.simulate].\n", encoding="utf-8"
    )
    api = "# API\n\n::: vangrad.simulation\n    options:\n      members: [simulate]\n"
    (tmp_path / "docs" / "api.md").write_text(api, encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nnav: [index.md, api.md]\n"
        f"plugins:\n  - mkdocstrings:\n      handlers:\n        python:\n"
        f"          paths: [{HOOKS.parent}]\n"
        f"hooks:\n  - {HOOKS / 'kept_pages.py'}\n",
        encoding="utf-8",
    )

    def serve(*commands: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", _SERVE_TWICE, *commands],
            cwd=tmp_path,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    kept = "Pages unchanged since they were last converted: 2, kept"
    builds = serve("serve", "serve").split("--- build ")
    assert kept not in builds[1]
    assert kept in builds[2]
    for run in (0, 1):  # the link into the kept page resolves, and the page is the same
        home = (tmp_path / f"s{run}" / "index.html").read_text(encoding="utf-8")
        assert 'href="api/#vangrad.simulation.simulate"' in home
    for name in ("index.html", "api/index.html"):
        page = [(tmp_path / f"s{run}" / name).read_text("utf-8") for run in (0, 1)]
        # The same but for the time of the build, which mkdocs' theme writes into every page.
        page = [re.sub(r"Build Date UTC : [^\n]*", "", text) for text in page]
        assert page[0] == page[1], name
    assert "vangrad.simulation.simulate" in page[1]
    # `mkdocs build` renders every page, every time.
    assert kept not in serve("build", "build")
