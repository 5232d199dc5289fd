"""MkDocs hook: tell the reader how to run the code, with the version the site was built from.

A page asks for the box with a marker line, `<!-- install -->`; every notebook page gets one
under its download buttons (hooks/notebooks.py). The box names the version written in
`vangrad/__init__.py`, the same the package is released as, and a way to install from the
repository when that release is not on PyPI: the repository and the commit the site was built
from when the build knows them (on GitHub Actions), else `pip install .` in a clone.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_MARKER = re.compile(r"^<!-- install -->$", re.MULTILINE)
_VERSION = re.compile(r'^__version__ = "(?P<version>[^"]+)"$', re.MULTILINE)


def python_requirement() -> str:
    """The oldest Python the package supports, from `requires-python` in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = re.fullmatch(r">=\s*(?P<version>[\d.]+)", project["requires-python"])
    if found is None:
        raise RuntimeError(f"requires-python = {project['requires-python']!r}: expected >=X.Y")
    return found["version"]


def package_version() -> str:
    """`vangrad.__version__`, read from the source: the build does not import the package."""
    found = _VERSION.search((ROOT / "vangrad" / "__init__.py").read_text())
    if found is None:
        raise RuntimeError('vangrad/__init__.py has no line __version__ = "..."')
    return found["version"]


@cache
def _repository() -> tuple[str | None, str | None]:
    """The repository's web address and the commit built, each None when unknown."""
    # hatch_build.py decides the package's addresses; the site names the same repository.
    spec = importlib.util.spec_from_file_location("_vangrad_hatch_build", ROOT / "hatch_build.py")
    hatch_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hatch_build)
    url = hatch_build.repository_url()
    if url is None:
        return None, None
    # The checkout's own commit: on a workflow_run (the Pages deploy), GITHUB_SHA is the branch's
    # newest commit, not necessarily the one checked out and built.
    try:
        run = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        commit = run.stdout.strip() if run.returncode == 0 else ""
    except OSError:  # no git (an unpacked sdist, say)
        commit = ""
    return url, commit or os.environ.get("GITHUB_SHA") or None


def commands() -> dict[str, str]:
    """The shell commands the box shows: `release`, `notebooks`, `repository`."""
    version = package_version()
    url, commit = _repository()
    source = f"git+{url}@{commit}" if url and commit else None
    return {
        "release": f"pip install vangrad=={version}",
        "notebooks": f'pip install vangrad=={version} "jupyterlab>=4"',
        "repository": f'pip install "vangrad @ {source}"' if source else "pip install .",
    }


def _code(command: str) -> str:
    # Material's markup for a highlighted block, so that it gets a copy button like every other.
    return (
        '<div class="language-bash highlight"><pre><span></span>'
        f"<code>{html.escape(command)}</code></pre></div>"
    )


def install_html(*, notebook: bool) -> str:
    """The box, as HTML: an admonition a reader finds near the top of the page."""
    version = package_version()
    url, commit = _repository()
    steps = commands()
    what = "this notebook" if notebook else "the snippets and notebooks on this site"
    first = steps["notebooks"] if notebook else steps["release"]
    after = (
        "then open the downloaded <code>.ipynb</code> with <code>jupyter lab</code>."
        if notebook
        else f"with Python {python_requirement()} or newer; it brings numpy and matplotlib."
    )
    if url and commit:
        built = f"<code>{commit[:12]}</code>"
        fallback = f"the commit of the repository this site was built from ({built})"
    else:
        fallback = "a clone of the repository, in its folder"
    return (
        '<div class="admonition tip vg-install">'
        '<p class="admonition-title">Run the code yourself</p>'
        f"<p>Every result here was computed with <code>vangrad {html.escape(version)}</code>. "
        f"To run {what} on your machine:</p>"
        f"{_code(first)}"
        f"<p>{after} Or install from {fallback}:</p>"
        f"{_code(steps['repository'])}"
        "</div>"
    )


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace a `<!-- install -->` line by the box."""
    if not _MARKER.search(markdown):
        return markdown
    # Blank lines around it: Markdown leaves a block of HTML alone only when it stands apart.
    return _MARKER.sub(lambda _: "\n" + install_html(notebook=False) + "\n", markdown)
