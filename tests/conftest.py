"""Test-wide set-up: a headless plotting backend, no figures left open, one site build."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# Before anything imports pyplot: tests never open a window, on CI or on a laptop.
os.environ["MPLBACKEND"] = "Agg"
# Before numpy loads: one BLAS thread. The engine multiplies stacks of small matrices, where
# OpenBLAS's threads only contend; on a busy 2-core machine tests/test_theory.py took 77 s with
# its default threads and 18 s with one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the whole site once per test run with `mkdocs build --strict`, into a temp folder."""
    out = tmp_path_factory.mktemp("site")
    # The notebooks' kernels must draw inline figures, not into the Agg backend set above.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"strict build failed:\n{result.stdout}\n{result.stderr}"
    return out
