"""What a reader copies from the published site, or downloads from it, runs against the released
package and prints what the page says.

The reader's environment (tests/reader_env.py) is a fresh virtual environment holding the wheel
built from this checkout and nothing of the checkout: no editable install, no dev extras. Every
Python block of the built HTML is taken as Material's copy button copies it (the code's text,
trailing whitespace trimmed; tests/test_browser.py holds the button to this), run there as a
script in a fresh process in an empty folder, and what it prints is compared with the block's
own `#>` lines. Every notebook a page offers for download (`.ipynb`) is executed there with a
Jupyter kernel, and its printed outputs are compared with those the page shows.

The blocks that are not a reader's to run are left out, each for its reason: the signatures of
the API page (`doc-signature`), and the engine page's excerpts of vangrad's source (a
`--8<--` include in the Markdown), which are tested where they live.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pytest_examples import find_examples

from tests.reader_env import python_of

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPETS_AT_ONCE = 2  # the machines have two cores
# Material's markup for a fenced Python block; the API page's signatures carry `doc-signature`.
_BLOCK = re.compile(
    r'<div class="language-(?:py|python) highlight">(?:<span class="filename">[^<]*</span>)?'
    r"<pre>.*?<code>(?P<code>.*?)</code></pre></div>",
    re.DOTALL,
)
_TAG = re.compile(r"<[^>]+>")
_EXPECTED = re.compile(r"^[ \t]*#>(?: (?P<line>.*)|)$", re.MULTILINE)
_INCLUDE = re.compile(r'^--8<-- "(?P<path>[^":]+):(?P<section>[\w-]+)"$', re.MULTILINE)
_PRINTED = re.compile(
    r'<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="text/plain"[^>]*>\s*'
    r"<pre>(?P<text>.*?)</pre>",
    re.DOTALL,
)

pytestmark = pytest.mark.slow


def copied_blocks(page: str) -> list[str]:
    """The page's Python blocks as Material's copy button copies them: the code's text (its
    `innerText`, which for these blocks is the text without tags), trailing whitespace trimmed.
    """
    return [html.unescape(_TAG.sub("", m["code"])).rstrip() for m in _BLOCK.finditer(page)]


def expected_output(code: str) -> list[str]:
    """The lines a block says it prints, in order: its `#>` comments, and the lines of a bare
    triple-quoted string, pytest-examples' form for an output too long for a comment."""
    expected: list[str] = []
    quoted: str | None = None  # the indentation of the open string
    for line in code.splitlines():
        if quoted is not None:
            if line.strip() == '"""':
                quoted = None
            else:
                expected.append(line.removeprefix(quoted))
        elif line.strip() == '"""':
            quoted = line[: len(line) - len(line.lstrip())]
        elif found := _EXPECTED.match(line):
            expected.append(found["line"] or "")
    return expected


def _excerpts() -> set[str]:
    """The code the docs include from vangrad's source (`--8<-- "file:section"`), dedented."""
    excerpts = set()
    for markdown in DOCS.rglob("*.md"):
        for found in _INCLUDE.finditer(markdown.read_text(encoding="utf-8")):
            source = (ROOT / found["path"]).read_text(encoding="utf-8")
            start = re.search(rf"# --8<-- \[start:{found['section']}\]\n", source)
            end = re.search(rf"\n[ \t]*# --8<-- \[end:{found['section']}\]", source)
            assert start, f"{markdown.name}: no start of section {found['section']}"
            assert end, f"{markdown.name}: no end of section {found['section']}"
            excerpts.add(textwrap.dedent(source[start.end() : end.start()]).strip())
    return excerpts


def _snippets_per_page() -> Counter[str]:
    """How many runnable Python blocks each page's Markdown has, by the page's path."""
    counts: Counter[str] = Counter()
    for example in find_examples(DOCS):
        lines = [line.strip() for line in example.source.splitlines() if line.strip()]
        if lines and all(line.startswith("--8<--") for line in lines):
            continue
        # A fence shown inside a `~~~markdown` block is text on the page, not a Python block.
        above = example.path.read_text(encoding="utf-8").splitlines()[: example.start_line - 1]
        if sum(line.startswith("~~~") for line in above) % 2:
            continue
        page = example.path.relative_to(DOCS).with_suffix("").as_posix()
        counts["home" if page == "index" else page] += 1
    return counts


def _reader_environ() -> dict[str, str]:
    # The reader's shell: nothing that points at the checkout or its environment.
    leaks = {
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "JUPYTER_PATH",
        "JUPYTER_PREFER_ENV_PATH",
        "VANGRAD_ENGINE",
        "PYTHONSTARTUP",
    }
    return {k: v for k, v in os.environ.items() if k not in leaks}


def _pages(site: Path) -> dict[str, str]:
    pages = {}
    for path in sorted(site.rglob("index.html")):
        where = path.parent.relative_to(site).as_posix()
        pages["home" if where == "." else where] = path.read_text(encoding="utf-8")
    return pages


def _run_copied(python: Path, folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True)
    (folder / "snippet.py").write_text(code + "\n", encoding="utf-8")
    return subprocess.run(
        [str(python), "snippet.py"],
        cwd=folder,
        env={**_reader_environ(), "MPLBACKEND": "Agg"},  # a script, not a window
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_every_block_a_reader_copies_runs_on_the_wheel_and_prints_what_the_page_says(
    built_site: Path, reader_env: Path, tmp_path: Path
) -> None:
    python = python_of(reader_env)
    excerpts = _excerpts()
    blocks: list[tuple[str, str]] = []
    skipped = 0
    for page, markup in _pages(built_site).items():
        for index, code in enumerate(copied_blocks(markup), start=1):
            if textwrap.dedent(code).strip() in excerpts:
                skipped += 1
                continue
            blocks.append((f"{page} block {index}", code))
    assert skipped == len(excerpts), "an excerpt of vangrad's source is missing from the site"
    # Every snippet of a page's Markdown reached its HTML (the API pages' come from docstrings).
    found = Counter(where.rsplit(" block ", 1)[0] for where, _ in blocks)
    docstrings = {page: n for page, n in found.items() if page.startswith("reference/")}
    assert found == _snippets_per_page() | docstrings

    def run(numbered: tuple[int, tuple[str, str]]) -> str | None:
        number, (where, code) = numbered
        done = _run_copied(python, tmp_path / str(number), code)
        if done.returncode != 0 or done.stderr:
            return f"{where}: exit {done.returncode}\n{done.stderr[-2000:]}"
        printed, expected = done.stdout.splitlines(), expected_output(code)
        if printed != expected:
            return f"{where}: printed {printed[:6]}, the page says {expected[:6]}"
        return None

    with ThreadPoolExecutor(SNIPPETS_AT_ONCE) as pool:
        problems = [p for p in pool.map(run, enumerate(blocks)) if p]
    print(f"\n{len(blocks)} copied blocks ran on the wheel; {skipped} excerpts left out")
    assert not problems, "\n\n".join(problems)


_EXECUTE = """
import json, sys
import nbclient, nbformat
from jupyter_client import KernelManager

notebook = nbformat.read(sys.argv[1], as_version=4)
# Sockets in this folder rather than TCP ports: kernels started side by side cannot race for a
# port (jupyter/jupyter_client#154), as hooks/notebooks.py explains.
kernel = KernelManager(kernel_name="python3", transport="ipc", ip="kernel")
nbclient.NotebookClient(notebook, km=kernel, timeout=900).execute()
printed = []
for cell in notebook.cells:
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream" and output["name"] == "stdout":
            printed.append(output["text"])
        elif output["output_type"] == "execute_result" and "text/plain" in output["data"]:
            printed.append(output["data"]["text/plain"])
json.dump(printed, sys.stdout)
"""
# A duration the notebook measures is the one printed thing that may differ from its page.
_DURATION = re.compile(r"\b\d+(?:\.\d+)? s\b")


def _shown_outputs(page: str) -> list[str]:
    return [html.unescape(found["text"]) for found in _PRINTED.finditer(page)]


def _same_but_durations(text: str) -> str:
    return _DURATION.sub("<seconds> s", text.strip())


def test_every_downloadable_notebook_runs_on_the_wheel_and_prints_what_its_page_shows(
    built_site: Path, reader_env: Path, tmp_path: Path
) -> None:
    notebooks = sorted(built_site.glob("notebooks/*/*.ipynb"))
    assert notebooks, "the site offers no notebook for download"
    python = python_of(reader_env)

    def run(notebook: Path) -> str | None:
        folder = tmp_path / notebook.stem
        folder.mkdir()
        downloaded = folder / notebook.name  # what the reader's browser saved
        downloaded.write_bytes(notebook.read_bytes())
        done = subprocess.run(
            [str(python), "-c", _EXECUTE, downloaded.name],
            cwd=folder,
            env=_reader_environ(),  # the kernel draws inline, as in Jupyter
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            return f"{notebook.name} failed on the wheel:\n{done.stderr[-3000:]}"
        printed = _same_but_durations("".join(json.loads(done.stdout)))
        page = (notebook.parent / "index.html").read_text(encoding="utf-8")
        shown = _same_but_durations("".join(_shown_outputs(page)))
        if printed != shown:
            return f"{notebook.name} printed\n{printed}\n\nbut its page shows\n{shown}"
        return None

    with ThreadPoolExecutor(SNIPPETS_AT_ONCE) as pool:
        problems = [p for p in pool.map(run, notebooks) if p]
    assert not problems, "\n\n".join(problems)
