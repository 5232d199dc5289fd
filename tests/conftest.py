"""Test-wide set-up: a headless plotting backend, no figures left open, one site build, and the
`engine` fixture that runs a test on both engines."""

from __future__ import annotations

import os
import signal
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
from hypothesis import HealthCheck, settings

# The `engine` fixture sets an environment variable for the whole test, which is what every
# example of a hypothesis test should see: the function-scoped fixture is intended.
settings.register_profile("vangrad", suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile("vangrad")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture(params=["reference", "fast"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once on each engine (`VANGRAD_ENGINE`): the science holds for both."""
    monkeypatch.setenv("VANGRAD_ENGINE", request.param)
    return request.param


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that need the built site last, so the build overlaps all the others."""
    items.sort(key=lambda item: "built_site" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session", autouse=True)
def _site_build(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], Path] | None]:
    """Start `mkdocs build --strict` with the first test, if any test of this run needs it.

    The build takes tens of seconds and uses both cores only part of the time; the unit tests
    run meanwhile, and `built_site` waits for it.
    """
    if not any("built_site" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    out = tmp_path_factory.mktemp("site")
    # The notebooks' kernels must draw inline figures, not into the Agg backend set above.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    log = out.parent / "mkdocs-build.log"
    with log.open("wb") as output:
        build = subprocess.Popen(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own process group: an interrupted run stops the drawing and notebook
            # processes the build starts, too.
            start_new_session=True,
        )
    try:
        yield build, out
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait()


@pytest.fixture(scope="session")
def built_site(_site_build: tuple[subprocess.Popen[bytes], Path]) -> Path:
    """The whole site, built once per test run with `mkdocs build --strict` into a temp folder."""
    build, out = _site_build
    returncode = build.wait()
    output = (out.parent / "mkdocs-build.log").read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, f"strict build failed:\n{output}"
    return out
