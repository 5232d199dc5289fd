"""Produce every checked output again in other numerical environments (see test_portability.py).

Run as a script by that test, in the background: for each environment it is given, it runs the
docs' snippets against their `#>` lines (tests/test_docs.py), and each snippet writes the
`{{ }}` numbers of the prose that it computes (hooks/computed.py), into a folder of that
environment's own.

    python tests/portability_run.py OUT ENVIRONMENTS_JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(out: Path, environments: list[dict[str, object]]) -> None:
    for index, environment in enumerate(environments):
        folder = out / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **environment["env"], "MPLBACKEND": "Agg"}  # type: ignore[dict-item]
        # Each snippet also writes the prose's numbers it computes (tests/test_docs.py).
        (folder / "values").mkdir()
        env["VANGRAD_PAGE_VALUES"] = str(folder / "values")
        with (folder / "snippets.log").open("wb") as log:
            snippets = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "tests/test_docs.py::test_snippet",
                    "-k",
                    str(environment["engine"]),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        (folder / "snippets.rc").write_text(str(snippets.returncode), encoding="utf-8")


if __name__ == "__main__":
    run(Path(sys.argv[1]), json.loads(sys.argv[2]))
