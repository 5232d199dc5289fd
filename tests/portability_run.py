"""Produce every checked output again in other numerical environments (see test_portability.py).

Run as a script by that test, in the background, once per environment: it runs the
docs' snippets against their `#>` lines (tests/test_docs.py), each snippet writing the `{{ }}`
numbers of the prose that it computes (hooks/computed.py), and the notebooks whose printed
numbers are checked (tests/test_notebooks.py), into a folder of that environment's own.

    python tests/portability_run.py FOLDER ENVIRONMENT_JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_CHECKED = ("training", "long-range")
PYTEST_OPTIONS = ("-q", "-p", "no:cacheprovider")


def run(folder: Path, environment: dict[str, object]) -> None:
    """Run the snippets and the checked notebooks in one environment; results into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **environment["env"], "MPLBACKEND": "Agg"}  # type: ignore[dict-item]
    env["VANGRAD_SNIPPET_ENGINES"] = str(environment["engine"])  # conftest's snippet_engine
    # Each snippet also writes the prose's numbers it computes (tests/test_docs.py).
    (folder / "values").mkdir()
    env["VANGRAD_PAGE_VALUES"] = str(folder / "values")
    with (folder / "snippets.log").open("wb") as log:
        snippets = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_docs.py::test_snippet", *PYTEST_OPTIONS],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    (folder / "snippets.rc").write_text(str(snippets.returncode), encoding="utf-8")
    # The notebooks whose printed numbers a test checks (tests/test_notebooks.py), run as the
    # scripts they are, in a folder of their own.
    for name in NOTEBOOKS_CHECKED:
        with (folder / f"{name}.txt").open("wb") as printed:
            notebook = subprocess.run(
                [sys.executable, str(ROOT / "docs" / "notebooks" / f"{name}.py")],
                cwd=folder,
                env=env,
                stdout=printed,
                stderr=subprocess.STDOUT,
                check=False,
            )
        (folder / f"{name}.rc").write_text(str(notebook.returncode), encoding="utf-8")


if __name__ == "__main__":
    run(Path(sys.argv[1]), json.loads(sys.argv[2]))
