"""Time vangrad against PyTorch CPU autograd at measuring per-layer gradient norms (issue 9).

Run from the repository root (`./dev bench` installs the `bench` extra, torch, on first use):

    ./dev bench                          # = .venv/bin/python benchmarks/gradient_flow.py
    ./dev bench --threads 1 --repeats 5  # any option below

What it does, in order:

1. Pins the thread count of both libraries to the same number (`--threads`, default: every
   core). numpy's BLAS (OpenBLAS in numpy's wheels) reads `OPENBLAS_NUM_THREADS` (and
   `OMP_NUM_THREADS`) once, when numpy is first imported, so this script sets them before it
   imports numpy; PyTorch gets `torch.set_num_threads`. numpy's elementwise functions are
   single-threaded whatever the setting.
2. Agreement check: for every workload, the same weights and input through both, and the
   per-layer norms of `dLoss/dh_l` and `dLoss/dW_l` must agree to 1e-10 relative in float64,
   or the script exits with status 1 before any timing. vangrad's float32 norms are compared
   with its float64 norms against the 1e-5 target (or PyTorch's own float32 error, where that
   is larger), and marked where they miss it.
3. Timing: each workload alternates between the two libraries (the order flips every round,
   with a short pause between runs so that one library's spinning BLAS or OpenMP threads do not
   steal a core from the other), and reports medians.
4. The machine's BLAS peak (a large matmul, GFLOP/s) and, for the matrix-product-bound
   workloads 4 to 7, the FLOPs vangrad performs and the fraction of that peak it reaches.
5. vangrad's peak memory (tracemalloc, which sees numpy's buffers) against the bytes of the
   weights and of the activations the backward pass must read.
6. The engines side by side: the fast engine (`VANGRAD_ENGINE=fast`), the reference engine
   (`VANGRAD_ENGINE=reference`) and the engine of an earlier commit (`--baseline`, default
   db5df34, the last before the split), loaded from git into this process under another
   package name, all interleaved on the same arrays. `--engines-only` runs this part alone.

vangrad changes no process-wide setting. The engine of db5df34 asked glibc to keep freed memory
(`mallopt`); this script stops it from doing so (`VANGRAD_KEEP_FREED_MEMORY=0`, which that
version reads), so that every engine runs with glibc's defaults, unless `--keep-freed-memory`
asks for the setting for all of them (`benchmarks/freed_memory.py`).

PyTorch is written as a user would write it: a `torch.nn.Module` holding the weights as
parameters, `retain_grad()` on every layer's output, `loss.backward()`, then the norms of every
`.grad`. Independent networks (workloads 1 and 2) are one module each, run in a loop, because
that is how the experiments are usually written; a batched PyTorch version (one module with
stacked weights and batched matmuls) is timed too and shown beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
_parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
_parser.add_argument("--repeats", type=int, default=7, help="timed rounds per workload")
_parser.add_argument("--only", type=int, nargs="*", help="workload numbers to run (default all)")
_parser.add_argument("--skip-timing", action="store_true", help="agreement check only")
_parser.add_argument("--baseline", default="db5df34", help="the commit whose engine to time too")
_parser.add_argument("--engines-only", action="store_true", help="only the engines side by side")
_parser.add_argument("--memory-only", action="store_true", help="only the peak-memory table")
_parser.add_argument(
    "--keep-freed-memory", action="store_true", help="ask glibc to keep freed memory (all engines)"
)
ARGS = _parser.parse_args()
# Before numpy's first import: OpenBLAS sizes its thread pool from these once, at load time.
# vangrad's own threads over a stack follow VANGRAD_NUM_THREADS (db5df34's followed OpenBLAS's).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VANGRAD_NUM_THREADS"):
    os.environ[_name] = str(ARGS.threads)
os.environ["VANGRAD_KEEP_FREED_MEMORY"] = "1" if ARGS.keep_freed_memory else "0"

import importlib
import io
import math
import platform
import re
import statistics
import subprocess
import tarfile
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

import vangrad
from vangrad import backprop, get_initializer
from vangrad.fast_engine import weight_grad_flops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from freed_memory import keep_freed_memory

try:
    import torch
except ImportError:
    sys.exit("benchmarks need PyTorch: run ./dev bench, or pip install -e '.[bench]'")

torch.set_num_threads(ARGS.threads)

F64_TOLERANCE = 1e-10
F32_TOLERANCE = 1e-5
PAUSE = 0.25  # seconds between timed runs, outside the timings (see the module docstring)


@dataclass(frozen=True)
class Workload:
    """One row of the table: a stack of `networks` independent networks of one shape."""

    number: int
    label: str
    depth: int
    width: int
    batch: int
    activation: str
    init: str
    scales: tuple[float, ...] = (1.0,)  # one network per scale, times `trials`
    trials: int = 1
    batchnorm: bool = False
    residual: bool = False

    @property
    def networks(self) -> int:
        """The number of independent networks: one per scale and trial."""
        return len(self.scales) * self.trials


WORKLOADS = [
    Workload(
        1,
        "seed experiment: 3 chains, d20 w1 b1 tanh",
        20,
        1,
        1,
        "tanh",
        "normal",
        scales=(0.5, 1.0, 1.5),
    ),
    Workload(
        2, "100 trials d50 w64 b32 tanh Xavier", 50, 64, 32, "tanh", "xavier_normal", trials=100
    ),
    Workload(3, "d200 w16 b8 sigmoid Xavier", 200, 16, 8, "sigmoid", "xavier_normal"),
    Workload(4, "d100 w512 b256 ReLU He", 100, 512, 256, "relu", "he_normal"),
    Workload(5, "d50 w256 b128 tanh Xavier", 50, 256, 128, "tanh", "xavier_normal"),
    Workload(
        6,
        "d50 w256 b128 tanh Xavier + batchnorm",
        50,
        256,
        128,
        "tanh",
        "xavier_normal",
        batchnorm=True,
    ),
    # He scaled by 1/sqrt(depth): with plain He every residual ReLU layer doubles the variance
    # (2^100 in 100 layers); the scaled branch keeps the forward pass O(1).
    Workload(
        7,
        "d100 w256 b128 ReLU residual, He/sqrt(d)",
        100,
        256,
        128,
        "relu",
        "he_normal",
        scales=(0.1,),
        residual=True,
    ),
]


@dataclass
class Case:
    """The arrays of one workload in one dtype: stacked weights `(networks, n, n)` per layer."""

    workload: Workload
    x: np.ndarray  # (batch, n), shared by every network
    weights: list[np.ndarray]  # depth arrays of shape (networks, n, n), or (n, n) for one

    def split(self) -> list[list[np.ndarray]]:
        """The weights of each network on its own, as a user looping over networks has them."""
        if self.weights[0].ndim == 2:
            return [self.weights]
        return [[w[k] for w in self.weights] for k in range(self.weights[0].shape[0])]


def make_case(workload: Workload, dtype: type[np.floating]) -> Case:
    """The workload's weights and input, drawn in float64 from its own seed, in `dtype`."""
    rng = np.random.default_rng(workload.number)
    n = workload.width
    init = get_initializer(workload.init)
    stacks = []
    for scale in workload.scales:
        drawn = init.sample(rng, n, n, weight_scale=scale, trials=workload.depth * workload.trials)
        stacks.append(drawn.reshape(workload.depth, workload.trials, n, n))
    weights = np.concatenate(stacks, axis=1)  # (depth, networks, n, n)
    if workload.networks == 1:
        weights = weights[:, 0]
    x = rng.standard_normal((workload.batch, n))
    # Drawn in float64 and rounded: the float32 case has the nearest weights, not other ones.
    return Case(workload, x.astype(dtype), [np.ascontiguousarray(w, dtype) for w in weights])


# --- the two implementations -----------------------------------------------------------------


def run_vangrad(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """`log10` norms of dLoss/dh_l (l = 0..L) and dLoss/dW_l (l = 1..L), shape (networks, .)."""
    w = case.workload
    flow = backprop(case.x, case.weights, w.activation, batchnorm=w.batchnorm, residual=w.residual)
    return np.atleast_2d(flow.log10_grad_norms), np.atleast_2d(flow.log10_weight_grad_norms)


TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
}


class TorchNet(torch.nn.Module):
    """The network as a PyTorch user writes it; stacked weights `(networks, n, n)` batch it."""

    def __init__(self, weights: list[np.ndarray], workload: Workload) -> None:
        super().__init__()
        self.layers = torch.nn.ParameterList(
            torch.nn.Parameter(torch.from_numpy(w.copy())) for w in weights
        )
        self.phi = TORCH_ACTIVATIONS[workload.activation]
        self.batchnorm = workload.batchnorm
        self.residual = workload.residual
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass, keeping every layer's output (with `retain_grad`) in `outputs`."""
        self.outputs = []
        h = x
        for w in self.layers:
            z = h @ w
            if self.batchnorm:  # over the batch, biased variance, no affine: as vangrad
                z = torch.nn.functional.batch_norm(z, None, None, training=True, eps=1e-5)
            a = self.phi(z)
            h = h + a if self.residual else a
            h.retain_grad()
            self.outputs.append(h)
        return h


def torch_norms(net: TorchNet, x_np: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One forward and backward pass; the norms (not log10), shape (depth + 1,), (depth,)."""
    net.zero_grad(set_to_none=True)
    x = torch.from_numpy(x_np)
    stacked = net.layers[0].dim() == 3
    if stacked:  # one copy of the input per network, so that dLoss/dx is per network too
        x = x.expand(net.layers[0].shape[0], *x.shape).contiguous()
    x.requires_grad_()
    net(x).sum().backward()
    grads = [x.grad, *(h.grad for h in net.outputs)]
    # Norms over the last two axes: per network when the module is a batched stack.
    grad_norms = torch.stack([torch.linalg.matrix_norm(g) for g in grads], dim=-1)
    weight_norms = torch.stack([torch.linalg.matrix_norm(p.grad) for p in net.layers], dim=-1)
    return grad_norms.numpy(), weight_norms.numpy()


def make_torch_loop(case: Case) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """One module per network, run one after the other."""
    nets = [TorchNet(weights, case.workload) for weights in case.split()]

    def run() -> tuple[np.ndarray, np.ndarray]:
        results = [torch_norms(net, case.x) for net in nets]
        return np.stack([r[0] for r in results]), np.stack([r[1] for r in results])

    return run


def make_torch_batched(case: Case) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """One module with stacked weights: the networks run together in batched matmuls."""
    net = TorchNet(case.weights, case.workload)
    return lambda: tuple(np.atleast_2d(a) for a in torch_norms(net, case.x))


# --- agreement ------------------------------------------------------------------------------


def relative_error(log10_a: np.ndarray, log10_b: np.ndarray) -> float:
    """Max over all entries of |a / b - 1|, from log10 norms (inf where one is 0 or nan)."""
    with np.errstate(invalid="ignore"):
        error = np.abs(np.expm1((log10_a - log10_b) * np.log(10.0)))
    return float(np.nan_to_num(error, nan=np.inf).max())


def log10(a: np.ndarray) -> np.ndarray:
    """`log10` in float64, -inf for 0 without a warning."""
    with np.errstate(divide="ignore"):
        return np.log10(a.astype(np.float64))


def check_agreement(workloads: list[Workload]) -> bool:
    """Print the agreement table; False if vangrad disagrees with PyTorch in float64.

    float32 against float64 is a target, 1e-5, or, where float32 arithmetic itself cannot get
    there, no worse than PyTorch's own float32 against float64 (over the layers whose PyTorch
    float32 gradient did not underflow to 0); a miss is marked, not fatal.
    """
    print("## Agreement (max relative error of the per-layer norms)\n")
    print(
        "| # | vangrad vs PyTorch, float64 | vangrad float32 vs float64 | "
        "PyTorch float32 vs float64 | PyTorch float32: layers underflowed to 0 |"
    )
    print("|---|---|---|---|---|")
    ok = True
    for w in workloads:
        c64, c32 = make_case(w, np.float64), make_case(w, np.float32)
        v64, vw64 = run_vangrad(c64)
        t64, tw64 = make_torch_loop(c64)()
        v32, vw32 = run_vangrad(c32)
        t32, tw32 = make_torch_loop(c32)()
        e64 = max(relative_error(v64, log10(t64)), relative_error(vw64, log10(tw64)))
        e32 = max(relative_error(v32, v64), relative_error(vw32, vw64))
        alive = (t32 > 0).all(axis=0)
        torch32 = max(
            relative_error(log10(t32[:, alive]), v64[:, alive]),
            relative_error(log10(tw32[:, alive[1:]]), vw64[:, alive[1:]]),
        )
        underflow = int((~alive).sum())
        # The float64 agreement is the correctness check; the float32 one is a target (float32
        # rounding, amplified by the network itself, can exceed it: see benchmarks/README.md).
        ok &= e64 <= F64_TOLERANCE
        mark = "" if e64 <= F64_TOLERANCE else " **FAIL: float64 disagrees**"
        if e32 > max(F32_TOLERANCE, torch32):
            mark += " (float32 over target)"
        print(
            f"| {w.number} | {e64:.1e} | {e32:.1e} | {torch32:.1e} | "
            f"{underflow} of {w.depth + 1}{mark} |"
        )
    print(
        f"\nTolerance: {F64_TOLERANCE:g} in float64 (a failure stops the script). Target: float32 "
        f"against float64 {F32_TOLERANCE:g}, or PyTorch's own float32 error where that is larger.\n"
    )
    return ok


# --- timing ---------------------------------------------------------------------------------


def interleaved_times(
    runs: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    """Seconds of each run, in rounds that visit every run once, the order flipping."""
    names = list(runs)
    for name in names:  # warm-up: first-call costs (allocator, BLAS thread start-up)
        runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            time.sleep(PAUSE)
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_peak(dtype: type[np.floating], n: int = 3000, repeats: int = 5) -> float:
    """GFLOP/s of numpy's largest-size matmul: what BLAS reaches on this machine."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)
    best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def engine_flops(w: Workload, dtype: type[np.floating]) -> float:
    """FLOPs of vangrad's matrix products: forward, input gradients, weight-gradient norms."""
    n, b = w.width, w.batch
    # The weight-gradient route depends on the dtype (Gram matrices in float64 only).
    per_layer = 2 * b * n * n * 2 + weight_grad_flops(b, n, n, dtype)
    return float(per_layer * w.depth * w.networks)


def time_workloads(workloads: list[Workload], peaks: dict[str, float]) -> None:
    """Print the table of times, ratios and achieved GFLOP/s."""
    print("## Times (median seconds of interleaved runs) and ratios\n")
    print(
        "| # | workload | dtype | vangrad | PyTorch | vangrad / PyTorch | same, fastest runs "
        "| PyTorch batched | vangrad / batched | vangrad GFLOP/s | % of peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for w in workloads:
        for dtype in (np.float64, np.float32):
            case = make_case(w, dtype)
            runs: dict[str, Callable[[], object]] = {
                "vangrad": lambda case=case: run_vangrad(case),
                "torch": make_torch_loop(case),
            }
            if w.networks > 1:
                runs["batched"] = make_torch_batched(case)
            times = interleaved_times(runs, ARGS.repeats)
            t = {name: statistics.median(values) for name, values in times.items()}
            # Contention from other processes only ever adds time, so the ratio of the fastest
            # runs is a second, less load-sensitive estimate beside the ratio of the medians.
            fastest = min(times["vangrad"]) / min(times["torch"])
            name = np.dtype(dtype).name
            batched = "- | -"
            if "batched" in t:
                batched = f"{t['batched']:.4f} | {t['vangrad'] / t['batched']:.2f}"
            flops = ""
            if w.number >= 4:
                rate = engine_flops(w, dtype) / t["vangrad"] / 1e9
                flops = f"{rate:.1f} | {rate / peaks[name]:.0%}"
            else:
                flops = "- | -"
            print(
                f"| {w.number} | {w.label} | {name} | {t['vangrad']:.4f} | {t['torch']:.4f} "
                f"| {t['vangrad'] / t['torch']:.2f} | {fastest:.2f} | {batched} | {flops} |"
            )
    print()


def memory(workloads: list[Workload]) -> None:
    """Print each engine's peak memory against what its caches must hold."""
    print("## vangrad's peak memory, by engine\n")
    print("Needed: the weights, plus the activations the backward pass must read: the layer")
    print("inputs h_0..h_L (one per layer, the last for the derivative of the output layer),")
    print("and also a_l with residual connections (h_l differs from a_l) or the normalised z_l")
    print("with batch normalisation. Peak: tracemalloc's peak during `backprop`, plus the")
    print("weights and input allocated before it.\n")
    print(
        "| # | dtype | weights MB | cached activations MB | fast: peak MB | fast: peak / needed "
        "| reference: peak MB | reference: peak / needed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for w in workloads:
        for dtype in (np.float64, np.float32):
            case = make_case(w, dtype)
            given = sum(a.nbytes for a in case.weights) + case.x.nbytes
            one = w.networks * w.batch * w.width * np.dtype(dtype).itemsize
            arrays = w.depth + 1 + (w.depth if w.residual or w.batchnorm else 0)
            needed = given + arrays * one
            peaks = []
            for engine in ("fast", "reference"):
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                engine_run(case, engine)()
                peaks.append(tracemalloc.get_traced_memory()[1] - before + given)
                tracemalloc.stop()
            os.environ.pop("VANGRAD_ENGINE", None)
            name = np.dtype(dtype).name
            cells = " | ".join(f"{peak / 1e6:.1f} | {peak / needed:.2f}" for peak in peaks)
            sizes = f"{given / 1e6:.1f} | {arrays * one / 1e6:.1f}"
            print(f"| {w.number} | {name} | {sizes} | {cells} |")
    print()


def machine() -> str:
    """The CPU, core count and library versions, for the header of the output."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; numpy "
        f"{np.__version__} ({blas['name']} {blas.get('version', '')}); torch {torch.__version__}; "
        f"vangrad {vangrad.__version__}; threads: {ARGS.threads} (numpy BLAS and torch)"
    )


def load() -> str:
    """The load average: other processes on the machine disturb the timings."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


# --- the engines side by side ---------------------------------------------------------------


def load_baseline(commit: str) -> ModuleType:
    """The `vangrad` package of `commit`, imported from git as `vangrad_<commit>`."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "archive", commit, "vangrad"], cwd=root, capture_output=True, check=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="vangrad-baseline-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    name = f"vangrad_{re.sub(r'[^0-9a-zA-Z]', '_', commit)}"
    (folder / "vangrad").rename(folder / name)
    for path in (folder / name).glob("*.py"):
        text = re.sub(r"\b(from|import) vangrad\b", rf"\1 {name}", path.read_text())
        path.write_text(text)
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def engine_run(case: Case, engine: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """`run_vangrad` with `VANGRAD_ENGINE` set to `engine`, read by each call."""

    def run() -> tuple[np.ndarray, np.ndarray]:
        os.environ["VANGRAD_ENGINE"] = engine
        return run_vangrad(case)

    return run


def _repeated(run: Callable[[], object], calls: int) -> Callable[[], object]:
    """`run`, `calls` times in a row."""

    def repeated() -> object:
        for _ in range(calls):
            result = run()
        return result

    return repeated


def compare_engines(workloads: list[Workload], baseline: ModuleType) -> None:
    """Print the side-by-side table of the three engines, and how far their results differ."""
    label = ARGS.baseline
    print(f"## The engines side by side: fast, reference and {label}'s\n")
    print(
        f"Median milliseconds a run, from interleaved samples of about 50 ms each (a sample "
        f"repeats a short workload). Differences: the largest absolute difference of any "
        f"log10 norm, fast against {label} and against the reference.\n"
    )
    print(
        f"| # | dtype | {label} ms | fast ms | reference ms | fast / {label} | same, fastest | "
        f"reference / fast | fast - {label} | fast - reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")

    def run_baseline(case: Case) -> tuple[np.ndarray, np.ndarray]:
        w = case.workload
        flow = baseline.backprop(
            case.x, case.weights, w.activation, batchnorm=w.batchnorm, residual=w.residual
        )
        return np.atleast_2d(flow.log10_grad_norms), np.atleast_2d(flow.log10_weight_grad_norms)

    for w in workloads:
        for dtype in (np.float64, np.float32):
            case = make_case(w, dtype)
            runs: dict[str, Callable[[], object]] = {
                "baseline": lambda case=case: run_baseline(case),
                "fast": engine_run(case, "fast"),
                "reference": engine_run(case, "reference"),
            }
            results = {name: run() for name, run in runs.items()}
            # A sample runs the workload often enough to take about 50 ms: a run of a
            # millisecond alone is at the mercy of the machine's noise.
            calls = max(1, math.ceil(0.05 / _timed(runs["baseline"])))
            samples = {name: _repeated(run, calls) for name, run in runs.items()}
            times = {
                name: [value / calls for value in values]
                for name, values in interleaved_times(samples, ARGS.repeats).items()
            }
            t = {name: statistics.median(values) for name, values in times.items()}
            fastest = min(times["fast"]) / min(times["baseline"])

            def gap(a: str, b: str, results: dict = results) -> float:
                pairs = zip(results[a], results[b], strict=True)
                with np.errstate(invalid="ignore"):
                    return max(float(np.nanmax(np.abs(x - y))) for x, y in pairs)

            ms = {name: f"{value * 1e3:.3g}" for name, value in t.items()}
            print(
                f"| {w.number} | {np.dtype(dtype).name} | {ms['baseline']} | {ms['fast']} "
                f"| {ms['reference']} | {t['fast'] / t['baseline']:.3f} | {fastest:.3f} "
                f"| {t['reference'] / t['fast']:.2f} | {gap('fast', 'baseline'):.0e} "
                f"| {gap('fast', 'reference'):.0e} |"
            )
    os.environ.pop("VANGRAD_ENGINE", None)
    print()


def main() -> int:
    """Agreement check, then timings, peak and memory; exit status 1 if the check fails."""
    workloads = [w for w in WORKLOADS if not ARGS.only or w.number in ARGS.only]
    print(f"Machine: {machine()}\n")
    print(f"At the start: {load()}\n")
    if ARGS.keep_freed_memory:
        print(f"glibc keeps freed memory (--keep-freed-memory): {keep_freed_memory()}\n")
    if ARGS.memory_only:
        memory(workloads)
        return 0
    if ARGS.engines_only:
        compare_engines(workloads, load_baseline(ARGS.baseline))
        print(f"At the end: {load()}")
        return 0
    if not check_agreement(workloads):
        print("Agreement check FAILED: no timings.")
        return 1
    if ARGS.skip_timing:
        return 0
    peaks = {np.dtype(d).name: matmul_peak(d) for d in (np.float64, np.float32)}
    print("## BLAS peak (numpy matmul of two 3000 x 3000 matrices, best of 5)\n")
    print(f"float64: {peaks['float64']:.1f} GFLOP/s; float32: {peaks['float32']:.1f} GFLOP/s\n")
    time_workloads(workloads, peaks)
    memory(workloads)
    compare_engines(workloads, load_baseline(ARGS.baseline))
    print(f"At the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
