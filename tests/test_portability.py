"""What the site prints is the same whatever SIMD kernels numpy dispatches and BLAS uses.

numpy picks, at import, kernels for `exp`, `tanh`, `log` and friends by the CPU's instruction
sets (AVX-512, AVX2, ...), and they differ in the last bits; OpenBLAS picks its matrix
kernels by the CPU too, and sums in another order with another thread count. GitHub's runners
differ in CPU from run to run, and so do readers' laptops. A snippet's `#>` line or a computed
number of the prose that depends on those bits is rounding noise on the page, and fails by
chance somewhere.

So the tests produce the checked outputs again in other environments on the machine they run
on, and every one must agree: the docs' snippets against their `#>` lines, every page's `{{ }}`
numbers against the ones the site build computed, and (in test_notebooks.py, from the same
runs) the training notebook's printed numbers against its prose. The main test run has all of this
CPU's kernels and one BLAS thread (conftest.py); the other environments switch off numpy's
AVX-512 groups, then its AVX2 group as well (those the CPU has: the summary says which), give
OpenBLAS the kernels of older CPUs (Haswell, then Sandy Bridge) and 2, then 1, threads. Each
runs the snippets on one engine, the reference (the site's) and then the fast one (the
package's default, which the main run uses); other tests hold the two equal to each other.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hooks import computed

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "computed"

pytestmark = pytest.mark.slow


def _built_values() -> dict[str, list[str]]:
    """Every page's `{{ }}` numbers as the site build computed them (the hook's cache)."""
    # The engine the build ran on: the caller's, or the site's own (hooks/engine.py).
    key = computed.code_key(os.environ.get("VANGRAD_ENGINE") or "reference")
    found = {}
    for path in sorted((ROOT / "docs").rglob("*.md")):
        uri = path.relative_to(ROOT / "docs").as_posix()
        page = computed.read_page(path.read_text(encoding="utf-8"), where=uri)
        if page.references:
            cached = CACHE / f"{computed.page_key(key, page)}.json"
            assert cached.is_file(), f"the site build computed no numbers for {uri}"
            found[uri] = json.loads(cached.read_text(encoding="utf-8"))["values"]
    return found


def _variant_values(folder: Path) -> dict[str, list[str]]:
    """The numbers each snippet computed in one environment, assembled per page in page order."""
    records = [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")]
    pages: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: (r["page"], r["snippet"])):
        pages.setdefault(record["page"], []).extend(record["values"])
    return pages


def test_outputs_agree_under_other_kernels_and_thread_counts(
    portability_runs: tuple[list[subprocess.Popen[bytes]], Path, list[dict[str, object]]],
    built_site: Path,
) -> None:
    """The environments are `numerical_environments` in conftest.py, which starts them."""
    processes, out, plans = portability_runs
    # Bounded: a hung run fails the test instead of stalling CI (a run takes about a minute).
    assert [process.wait(timeout=900) for process in processes] == [0] * len(plans)
    built = _built_values()
    failures = []
    for index, plan in enumerate(plans):
        folder = out / str(index)
        label = plan["label"]
        if (folder / "snippets.rc").read_text() != "0":
            log = (folder / "snippets.log").read_text(errors="replace")
            failures.append(f"[{label}] the snippets print something else:\n{log[-6000:]}")
        theirs = _variant_values(folder / "values")
        for page, expected in built.items():
            found = theirs.get(page, [])
            if len(found) != len(expected):
                failures.append(
                    f"[{label}] {page}: {len(found)} numbers, the build {len(expected)}"
                )
                continue
            for position, (value, ours) in enumerate(zip(found, expected, strict=True)):
                if value != ours:
                    failures.append(f"[{label}] {page}, number {position + 1}: {value} != {ours}")
    assert not failures, "\n".join(failures)
