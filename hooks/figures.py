"""MkDocs hook: draw the site's figures and tables from `vangrad` while the site builds.

A page refers to a figure by its file name, `![alt text](figures/NAME.svg)`, and to a table by a
marker line, `<!-- table: NAME -->`. Both are made here by calling `vangrad`, never pasted in,
so a change to the package shows on the site at the next build. Figures are cached under
`.cache/figures`, keyed by a hash of `vangrad`'s source and of this file, so `mkdocs serve`
reloads stay fast while any code change redraws them.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display during a build

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

import vangrad
from vangrad.plotting import plot_activation, plot_gradient_bound

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "figures"
FIGURE_DIR = "figures"


def _sigmoid_and_tanh_saturation() -> Axes:
    _, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharey=True)
    plot_activation("sigmoid", tangent_at=2.0, ax=left)
    plot_activation("tanh", tangent_at=2.0, ax=right)
    right.set_ylabel("")
    return left


# name -> function drawing the figure on new Axes and returning one of them
FIGURES: dict[str, Callable[[], Axes]] = {
    "gradient-bound": lambda: plot_gradient_bound(30),
    "sigmoid-tanh-saturation": _sigmoid_and_tanh_saturation,
}


def _bound_table() -> str:
    depths = (5, 10)
    rows = ["| layer (input = 1) | " + " | ".join(f"{d}-layer stack" for d in depths) + " |"]
    rows.append("|---:|" + "---:|" * len(depths))
    bounds = {d: vangrad.gradient_bound(d) for d in depths}
    for layer in range(1, max(depths) + 1):
        cells = [f"{bounds[d][layer - 1]:.3e}" if layer <= d else "" for d in depths]
        rows.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# name -> function returning a Markdown table
TABLES: dict[str, Callable[[], str]] = {
    "gradient-bound": _bound_table,
}

_TABLE_MARKER = re.compile(r"^<!-- table: (?P<name>[\w-]+) -->$", re.MULTILINE)


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted([*(ROOT / "vangrad").rglob("*.py"), Path(__file__)]):
        digest.update(path.read_bytes())
    digest.update(matplotlib.__version__.encode())
    return digest.hexdigest()[:16]


def render_svg(name: str) -> bytes:
    """Draw one figure and return it as SVG bytes (deterministic for the same code)."""
    with plt.rc_context(
        {
            "svg.hashsalt": "vangrad",
            "svg.fonttype": "path",  # text as paths: no font to fetch, same look everywhere
            "figure.facecolor": "white",  # legible on the dark palette too
            "savefig.facecolor": "white",
        }
    ):
        ax = FIGURES[name]()
        buffer = io.BytesIO()
        ax.figure.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(ax.figure)
    return buffer.getvalue()


def on_files(files: Files, config: Any, **_: Any) -> Files:
    """Add every figure to the site as a generated file."""
    key = _source_hash()
    CACHE.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        cached = CACHE / f"{name}-{key}.svg"
        if not cached.exists():
            for stale in CACHE.glob(f"{name}-*.svg"):
                stale.unlink()
            cached.write_bytes(render_svg(name))
        files.append(
            File.generated(config, f"{FIGURE_DIR}/{name}.svg", content=cached.read_bytes())
        )
    return files


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace each `<!-- table: NAME -->` line by the table it names."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise PluginError(
                f"{page.file.src_uri}: unknown table {name!r}; known: {sorted(TABLES)}"
            )
        return TABLES[name]()

    return _TABLE_MARKER.sub(replace, markdown)
