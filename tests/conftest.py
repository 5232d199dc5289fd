"""Test-wide set-up: a headless plotting backend, no figures left open, one site build, and the
`engine` fixture that runs a test on both engines."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# `./dev quick` runs the science on the reference engine only; tests/test_fast_engine.py, which
# it runs too, holds the fast engine to the reference.
ENGINES = os.environ.get("VANGRAD_TEST_ENGINES", "reference,fast").split(",")
# The docs' snippets run on one engine per numerical environment: here the package's default,
# the fast one; test_portability.py's runs use the reference in one environment and the fast
# engine in the other. The science tests above hold the two engines to each other.
SNIPPET_ENGINES = os.environ.get("VANGRAD_SNIPPET_ENGINES", "fast").split(",")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once on each engine (`VANGRAD_ENGINE`): the science holds for both."""
    monkeypatch.setenv("VANGRAD_ENGINE", request.param)
    return request.param


@pytest.fixture(params=SNIPPET_ENGINES)
def snippet_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine a docs snippet runs on in this run (`VANGRAD_SNIPPET_ENGINES`)."""
    monkeypatch.setenv("VANGRAD_ENGINE", request.param)
    return request.param


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that need the built site last, so the build overlaps all the others."""
    items.sort(key=lambda item: "built_site" in getattr(item, "fixturenames", ()))


def _wanted(request: pytest.FixtureRequest, fixture: str) -> bool:
    """Whether any test of this run uses `fixture`."""
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)


def _background(command: list[str], log: Path | None, env: dict[str, str]) -> subprocess.Popen:
    """Start `command` from the checkout in a process group of its own, output into `log`."""
    with open(log or os.devnull, "wb") as output:
        # Its own process group: an interrupted run stops what the command starts, too (the
        # build's drawing and notebook processes, say).
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session", autouse=True)
def _site_build(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], Path] | None]:
    """Start `mkdocs build --strict` with the first test, if any test of this run needs it.

    The build takes tens of seconds and uses both cores only part of the time; the unit tests
    run meanwhile, and `built_site` waits for it.
    """
    if not _wanted(request, "built_site"):
        yield None
        return
    out = tmp_path_factory.mktemp("site")
    # The notebooks' kernels must draw inline figures, not into the Agg backend set above.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    build = _background(command, out.parent / "mkdocs-build.log", env)
    try:
        yield build, out
    finally:
        _stop([build])


@pytest.fixture(scope="session", autouse=True)
def _reader_env_start(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], Path] | None]:
    """Start setting up a reader's environment (tests/reader_env.py), if this run needs it."""
    if not _wanted(request, "reader_env"):
        yield None
        return
    out = tmp_path_factory.mktemp("reader")
    command = [sys.executable, str(ROOT / "tests" / "reader_env.py"), str(out)]
    setup = _background(command, out.parent / "reader-env.log", dict(os.environ))
    try:
        yield setup, out
    finally:
        _stop([setup])


@pytest.fixture(scope="session")
def reader_env(_reader_env_start: tuple[subprocess.Popen[bytes], Path]) -> Path:
    """A folder with a fresh virtual environment (`venv/`) holding the built wheel."""
    setup, out = _reader_env_start
    returncode = setup.wait(timeout=900)  # bounded: a hung pip fails the test, not CI
    logs = [out.parent / "reader-env.log", out / "setup.log"]
    log = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in logs if p.exists())
    ready = returncode == 0 and (out / "rc").exists() and (out / "rc").read_text() == "0"
    assert ready, f"the reader's environment failed (exit {returncode}):\n{log[-6000:]}"
    return out


# numpy's dispatch groups (numpy >= 2.4 names) above the x86-64-v2 baseline.
AVX512 = ("X86_V4", "AVX512_ICL", "AVX512_SPR")
AVX2 = ("X86_V3",)


def _switchable(groups: tuple[str, ...]) -> list[str]:
    """Those of `groups` that numpy dispatches on this CPU, so that switching them off matters."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [g for g in groups if g in __cpu_dispatch__ and __cpu_features__.get(g)]


def numerical_environments() -> list[dict[str, object]]:
    """The numerical environments to compare with the main run's, and what each changes."""
    x86 = platform.machine() in ("x86_64", "AMD64")
    plans = [(AVX512, "Haswell", "2", "reference"), (AVX512 + AVX2, "Sandybridge", "1", "fast")]
    found = []
    for groups, blas_core, threads, engine in plans:
        off = _switchable(groups)
        env = {"OPENBLAS_NUM_THREADS": threads, "VANGRAD_ENGINE": engine}
        if off:
            env["NPY_DISABLE_CPU_FEATURES"] = " ".join(off)
        if x86:
            env["OPENBLAS_CORETYPE"] = blas_core
        kernels = f"numpy without {' '.join(off)}" if off else "numpy with all its kernels"
        blas = f"OpenBLAS {blas_core if x86 else 'default'} kernels, {threads} thread(s)"
        found.append({"env": env, "engine": engine, "label": f"{kernels}; {blas}; {engine}"})
    return found


@pytest.fixture(scope="session", autouse=True)
def _portability_start(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[subprocess.Popen[bytes]], Path, list[dict[str, object]]] | None]:
    """Start producing the checked outputs in other environments (test_portability.py), if
    this run has that test: in the background, from the first test on, as the site build; one
    process per environment, so that the last of them do not wait for each other."""
    if not _wanted(request, "portability_runs"):
        yield None
        return
    out = tmp_path_factory.mktemp("portability")
    plans = numerical_environments()
    request.config.stash[_EXERCISED] = [str(plan["label"]) for plan in plans]
    env = {k: v for k, v in os.environ.items() if k != "VANGRAD_ENGINE"}
    script = str(ROOT / "tests" / "portability_run.py")
    processes = [
        _background([sys.executable, script, str(out / str(index)), json.dumps(plan)], None, env)
        for index, plan in enumerate(plans)
    ]
    try:
        yield processes, out, plans
    finally:
        _stop(processes)


@pytest.fixture(scope="session")
def portability_runs(
    _portability_start: tuple[list[subprocess.Popen[bytes]], Path, list[dict[str, object]]],
) -> tuple[list[subprocess.Popen[bytes]], Path, list[dict[str, object]]]:
    """The background runs of test_portability.py: (processes, output folder, environments)."""
    return _portability_start


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say which numerical environments the portability test exercised on this machine."""
    passed = any(
        report.nodeid.endswith("test_outputs_agree_under_other_kernels_and_thread_counts")
        for report in terminalreporter.stats.get("passed", [])
    )
    for label in config.stash.get(_EXERCISED, []):
        verdict = "agreed" if passed else "were compared"
        terminalreporter.write_line(f"portability: the checked outputs {verdict} under {label}")


_EXERCISED = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def built_site(_site_build: tuple[subprocess.Popen[bytes], Path]) -> Path:
    """The whole site, built once per test run with `mkdocs build --strict` into a temp folder."""
    build, out = _site_build
    returncode = build.wait()
    output = (out.parent / "mkdocs-build.log").read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, f"strict build failed:\n{output}"
    return out
