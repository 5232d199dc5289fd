"""The fast engine gives the reference engine's results: within 1e-12 in float64, on random
networks and on the cases each of its optimisations has to get right; and bitwise the same
results whatever the number of threads."""

from __future__ import annotations

import itertools
import multiprocessing
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vangrad import ACTIVATIONS, Activation, GradientFlow, get_activation
from vangrad import fast_engine as fast
from vangrad.engine import forward, run_reference

# Every per-network array of a GradientFlow.
RESULTS = (
    "log10_grad_norms",
    "log10_weight_grad_norms",
    "log10_bias_grad_norms",
    "activation_mean",
    "activation_std",
    "saturated_fraction",
    "output",
)
SOFTSIGN = Activation(
    "softsign", lambda z: z / (1 + np.abs(z)), lambda z: 1 / (1 + np.abs(z)) ** 2, 1.0, True
)


def both(*args: object, **kwargs: object) -> tuple[GradientFlow, GradientFlow]:
    """The fast engine's result and the reference engine's, on the same checked arrays."""
    with np.errstate(all="ignore"):
        return fast.run_fast(*args, **kwargs), run_reference(*args, **kwargs)


def assert_same_results(
    fast_flow: GradientFlow, reference: GradientFlow, *, atol: float = 1e-12, rtol: float = 0
) -> None:
    """Every result within `atol` (log10 norms, statistics) or `rtol` (the output).

    The gradients of a network whose forward pass overflowed mean nothing (both engines say so
    in `trial_overflow_layer`, which must agree); only the other networks' are compared.
    """
    np.testing.assert_array_equal(fast_flow.trial_overflow_layer, reference.trial_overflow_layer)
    assert fast_flow.overflow_layer == reference.overflow_layer
    healthy = reference.trial_overflow_layer == 0
    for name in RESULTS:
        got, expected = getattr(fast_flow, name), getattr(reference, name)
        if expected is None:
            assert got is None, name
            continue
        if name == "output":
            got, expected = got.reshape(*healthy.shape, -1), expected.reshape(*healthy.shape, -1)
        got, expected = got[healthy], expected[healthy]
        if name == "output":
            np.testing.assert_allclose(got, expected, rtol=max(rtol, 1e-12), err_msg=name)
        else:
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=name)


@dataclass(repr=False)
class Network:
    """A random network as the engines take it (checked arrays)."""

    x: np.ndarray
    weights: list[np.ndarray]
    activation: Activation
    biases: list[np.ndarray] | None
    batchnorm: bool
    residual: bool | str
    upstream: np.ndarray | None
    gain: np.ndarray | None = None
    layernorm: bool = False

    def __repr__(self) -> str:  # hypothesis prints a failing example: shapes, not arrays
        def shape(a: object) -> object:
            return None if a is None else np.shape(a)

        return (
            f"Network(x={shape(self.x)}, {len(self.weights)} layers {shape(self.weights[0])} "
            f"{self.weights[0].dtype}, {self.activation.name}, biases="
            f"{shape(self.biases and self.biases[0])}, batchnorm={self.batchnorm}, "
            f"layernorm={self.layernorm}, residual={self.residual}, "
            f"upstream={shape(self.upstream)}, gain={shape(self.gain)})"
        )

    def options(self) -> dict[str, object]:
        return {
            "biases": self.biases,
            "batchnorm": self.batchnorm,
            "layernorm": self.layernorm,
            "residual": self.residual,
            "upstream": self.upstream,
            "gain": self.gain,
        }


@st.composite
def networks(draw: st.DrawFn, dtype: type = np.float64) -> Network:
    """Small networks (the grouped schedule, up to 250 layers) and large ones (one layer at a
    time), plain or stacked, with every option of the engine drawn independently: biases
    (shifted so that ReLU units die), an upstream gradient of the output's shape or one shared
    by every network, and a gain per network, as sweeps use."""
    large = draw(st.booleans())
    residual = draw(st.sampled_from([False, True, "post"]))
    norm = draw(st.sampled_from([None, "batch", "layer"]))
    batchnorm, layernorm = norm == "batch", norm == "layer"
    with_biases = draw(st.booleans())
    smallest = 2 if layernorm else 1  # the public API refuses layer norm over a single unit
    depth = draw(
        st.integers(1, 5) if large else st.one_of(st.integers(1, 40), st.integers(100, 250))
    )
    if large:  # more than GROUP_ELEMENTS / 2 outputs a layer
        batch, width = draw(st.integers(40, 64)), draw(st.integers(64, 96))
        widths = [width] * (depth + 1)
    else:
        # Layer normalisation works at a batch of 1.
        batch = draw(st.integers(1 if layernorm else 2, 9))
        widths = [draw(st.integers(smallest, 8))] * (depth + 1)
        if not residual:
            widths = draw(
                st.lists(st.integers(smallest, 8), min_size=depth + 1, max_size=depth + 1)
            )
    trials = draw(st.sampled_from([None, 1, 3]))
    shared_x = draw(st.booleans())
    activation = draw(st.sampled_from([*sorted(ACTIVATIONS), "softsign"]))
    scale = draw(st.floats(0.3, 2.5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    stack = () if trials is None else (trials,)
    weights = [
        rng.normal(0, scale / np.sqrt(n_in), size=(*stack, n_in, n_out)).astype(dtype)
        for n_in, n_out in itertools.pairwise(widths)
    ]
    x = rng.normal(size=((batch, widths[0]) if shared_x else (*stack, batch, widths[0])))
    biases = None
    if with_biases:
        shift = draw(st.sampled_from([0.0, -1.0]))  # -1: many ReLU units die
        biases = [(rng.normal(shift, 0.3, size=(*stack, 1, n))).astype(dtype) for n in widths[1:]]
    gain = None
    if trials is not None and draw(st.booleans()):
        gain = np.array([[0.5], [1.5]])  # a (2, trials) stack
        stack = (2, *stack)
    upstream_kind = draw(st.sampled_from(["none", "full", "shared"]))
    upstream = None
    if upstream_kind != "none":
        shape = (*stack, batch, widths[-1]) if upstream_kind == "full" else (batch, widths[-1])
        upstream = rng.normal(size=shape).astype(dtype)
    return Network(
        x.astype(dtype),
        weights,
        SOFTSIGN if activation == "softsign" else get_activation(activation),
        biases,
        batchnorm,
        residual,
        upstream,
        gain,
        layernorm,
    )


# Digits a result keeps when the forward pass produced subnormal slopes (a sigmoid's at z below
# -709): 1e-320 is held to about 4 digits, and which engine rounds it where differs (the fast
# one multiplies it with a larger, unscaled gradient, and loses less). Seen once, in 245
# residual softplus layers of width 1: 5.8e-6 apart in a log10 weight-gradient norm.
SUBNORMAL_ATOL = 1e-4


def _has_subnormal_slopes(network: Network) -> bool:
    options = {k: v for k, v in network.options().items() if k != "upstream"}
    if network.gain is not None:  # as run_reference passes it: a factor per network
        options["gain"] = network.gain.astype(network.x.dtype)[..., np.newaxis, np.newaxis]
    with np.errstate(all="ignore"):
        _, layers = forward(network.x, network.weights, network.activation, **options)
    tiny = np.finfo(network.x.dtype).smallest_normal
    return any(np.any((layer.slope != 0) & (np.abs(layer.slope) < tiny)) for layer in layers)


@settings(max_examples=150, deadline=None)
@given(networks(), st.booleans())
def test_the_fast_engine_gives_the_reference_results(network: Network, keep_grads: bool) -> None:
    fast_flow, reference = both(
        network.x, network.weights, network.activation, **network.options(), keep_grads=keep_grads
    )
    assert_same_results(
        fast_flow, reference, atol=SUBNORMAL_ATOL if _has_subnormal_slopes(network) else 1e-12
    )
    if keep_grads:
        for name in ("grads", "weight_grads", "bias_grads"):
            expected = getattr(reference, name)
            if expected is None:
                assert getattr(fast_flow, name) is None
                continue
            for got, want in zip(getattr(fast_flow, name), expected, strict=True):
                scale = np.max(np.abs(want), initial=0.0)
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale)


@settings(max_examples=60, deadline=None)
@given(networks(np.float32))
def test_in_float32_the_fast_engine_gives_the_reference_results_too(network: Network) -> None:
    fast_flow, reference = both(network.x, network.weights, network.activation, **network.options())
    assert fast_flow.log10_grad_norms.dtype == np.float64  # the norms; the output stays float32
    assert fast_flow.output.dtype == reference.output.dtype == np.float32
    assert_same_results(fast_flow, reference, atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 30),
    st.sampled_from(sorted(ACTIVATIONS)),
    st.sampled_from([None, "batch", "layer"]),
    st.integers(0, 2**32 - 1),
)
def test_sweep_style_gains_give_the_reference_results(
    depth: int, activation: str, norm: str | None, seed: int
) -> None:
    # Base weights (trials, n, n) and a gain (scales, 1): what sweep and the theory run.
    rng = np.random.default_rng(seed)
    weights = list(rng.normal(0, 1 / 3, size=(depth, 4, 9, 9)))
    x = rng.normal(size=(4, 5, 9))
    gain = np.array([[0.5], [1.0], [2.0]])
    fast_flow, reference = both(
        x,
        weights,
        get_activation(activation),
        batchnorm=norm == "batch",
        layernorm=norm == "layer",
        gain=gain,
        measure_weight_grads=False,
    )
    assert fast_flow.log10_grad_norms.shape == (3, 4, depth + 1)
    assert_same_results(fast_flow, reference)


@st.composite
def threaded_stacks(draw: st.DrawFn) -> Network:
    """Stacks that the fast engine splits over three threads (see the test's assertion)."""
    trials, batch, width = draw(st.integers(6, 9)), 32, 64
    depth = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = list(rng.normal(0, 1 / 8, size=(depth, trials, width, width)))
    biases = None
    if draw(st.booleans()):
        biases = list(rng.normal(0, 0.1, size=(depth, trials, 1, width)))
    upstream = rng.normal(size=(trials, batch, width)) if draw(st.booleans()) else None
    norm = draw(st.sampled_from([None, "batch", "layer"]))
    return Network(
        rng.normal(size=(batch, width)),
        weights,
        get_activation(draw(st.sampled_from(sorted(ACTIVATIONS)))),
        biases,
        norm == "batch",
        draw(st.booleans()),
        upstream,
        layernorm=norm == "layer",
    )


@settings(max_examples=25, deadline=None)
@given(threaded_stacks())
def test_threads_give_bitwise_the_results_of_one_thread(
    monkeypatch: pytest.MonkeyPatch, network: Network
) -> None:
    def run() -> GradientFlow:
        return fast.run_fast(
            network.x,
            network.weights,
            network.activation,
            biases=network.biases,
            batchnorm=network.batchnorm,
            layernorm=network.layernorm,
            residual=network.residual,
            upstream=network.upstream,
        )

    monkeypatch.setenv("VANGRAD_NUM_THREADS", "1")
    alone = run()
    monkeypatch.setenv("VANGRAD_NUM_THREADS", "3")
    stack = (network.weights[0].shape[0],)
    parts = fast._thread_parts(network.x, network.weights, stack, upstream=None, keep_grads=False)
    assert parts == 3, "the stack must really be split"
    split = run()
    for name in RESULTS:
        expected = getattr(alone, name)
        if expected is not None:
            np.testing.assert_array_equal(getattr(split, name), expected, err_msg=name)
    assert split.overflow_layer == alone.overflow_layer


def test_sweep_style_stacks_split_along_the_gain_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    # A (scales, trials) stack whose first axis exists only in the gain.
    rng = np.random.default_rng(14)
    weights = list(rng.normal(0, 1 / 8, size=(5, 3, 64, 64)))
    x = rng.normal(size=(3, 16, 64))
    gain = np.array([[0.5], [1.0], [1.5], [2.0]])
    act = get_activation("relu")
    monkeypatch.setenv("VANGRAD_NUM_THREADS", "1")
    alone = fast.run_fast(x, weights, act, gain=gain, measure_weight_grads=False)
    monkeypatch.setenv("VANGRAD_NUM_THREADS", "2")
    assert fast._thread_parts(x, weights, (4, 3), upstream=None, keep_grads=False) == 2
    split = fast.run_fast(x, weights, act, gain=gain, measure_weight_grads=False)
    np.testing.assert_array_equal(split.log10_grad_norms, alone.log10_grad_norms)
    np.testing.assert_array_equal(split.output, alone.output)
    assert_same_results(
        split, run_reference(x, weights, act, gain=gain, measure_weight_grads=False)
    )


def test_a_bad_thread_count_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VANGRAD_NUM_THREADS", "two")
    rng = np.random.default_rng(1)
    weights = list(rng.normal(0, 1 / 8, size=(2, 8, 64, 64)))
    with pytest.raises(ValueError, match="VANGRAD_NUM_THREADS must be an integer >= 1, got 'two'"):
        fast.run_fast(rng.normal(size=(32, 64)), weights, get_activation("tanh"))


# --- the cases each optimisation must get right -------------------------------------------------


@pytest.mark.parametrize("large", [False, True], ids=["grouped", "one-layer"])
@pytest.mark.parametrize("residual", [False, True, "post"], ids=["plain", "residual", "post"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_layernorm_gives_the_reference_results(
    activation: str, residual: bool | str, large: bool
) -> None:
    # Every activation and block, with biases, on a stack: small layers run in groups (and
    # their backward pass in unscaled chunks), large ones alone; the bias gradients, which
    # layer normalisation does not zero, are compared too.
    rng = np.random.default_rng(19)
    batch, width, depth = (32, 72, 4) if large else (5, 6, 40)
    weights = list(rng.normal(0, 1 / np.sqrt(width), size=(depth, 3, width, width)))
    biases = list(rng.normal(0, 0.3, size=(depth, 3, 1, width)))
    x = rng.normal(size=(batch, width))
    if large:
        stack = (3,)
        assert fast._plan_groups(x.shape, weights, stack) == [range(i, i + 1) for i in range(4)]
    fast_flow, reference = both(
        x,
        weights,
        get_activation(activation),
        biases=biases,
        layernorm=True,
        residual=residual,
        keep_grads=True,
    )
    assert fast_flow.layernorm
    assert reference.layernorm
    assert_same_results(fast_flow, reference)
    assert fast_flow.bias_grads is not None
    assert reference.bias_grads is not None
    for got, want in zip(fast_flow.bias_grads, reference.bias_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_chunk_that_leaves_the_float_range_is_run_again_layer_by_layer(dtype: type) -> None:
    # Sigmoid with large positive weights: every unit saturates at 1 (z near 4c), so every layer
    # shrinks the gradient by about e^-4c: 10^-70 a layer in float64 (c = 40) and 10^-7 in
    # float32 (c = 4), and a chunk of eight small layers would leave the float range.
    rng = np.random.default_rng(5)
    c = 40.0 if dtype == np.float64 else 4.0
    weights = [(c * rng.uniform(0.5, 1.5, size=(4, 4))).astype(dtype) for _ in range(30)]
    x = rng.uniform(0, 1, size=(3, 4)).astype(dtype)
    fast_flow, reference = both(x, weights, get_activation("sigmoid"))
    assert np.isfinite(reference.log10_grad_norms).all()
    shrink = reference.log10_grad_norms[-1] - reference.log10_grad_norms[-9]
    assert shrink > 0.4 * np.log10(np.finfo(dtype).max), "it must shrink faster than a chunk holds"
    np.testing.assert_allclose(fast_flow.log10_grad_norms, reference.log10_grad_norms, rtol=1e-9)
    np.testing.assert_allclose(
        fast_flow.log10_weight_grad_norms, reference.log10_weight_grad_norms, rtol=1e-9
    )


def test_a_weight_gradient_that_would_overflow_in_a_chunk_is_run_again() -> None:
    # h_0 of 1e300 and a gradient that grows 1e10 a layer: unscaled over a chunk, h_0^T dz
    # would overflow, though rescaled every layer it is finite.
    x = np.zeros((2, 3))
    x[:, 0] = 1e300
    first = np.eye(3)
    first[0, 0] = 1e-300
    weights = [first] + [1e10 * np.eye(3)] * 7
    fast_flow, reference = both(x, weights, get_activation("linear"))
    assert np.isfinite(reference.log10_weight_grad_norms).all()
    assert_same_results(fast_flow, reference)


def test_a_weight_gradient_that_would_underflow_in_a_chunk_is_run_again() -> None:
    # Found by hypothesis: in float32, 100 leaky-ReLU layers of one unit with residual="post"
    # shrink the layers' inputs towards float32's smallest while the gradient, unscaled over
    # a chunk, drifts far below 1; their product h^T dz underflowed to exactly 0 where the
    # reference's rescaled gradient gives a finite log10 norm (near -165).
    rng = np.random.default_rng(4)
    x = rng.random((2, 1)).astype(np.float32)
    weights = [rng.normal(size=(1, 1)).astype(np.float32) for _ in range(100)]
    fast_flow, reference = both(x, weights, get_activation("leaky_relu"), residual="post")
    assert_same_results(fast_flow, reference, rtol=1e-5, atol=1e-5)


def test_weight_grad_norms_from_gram_matrices_give_the_reference_results() -> None:
    rng = np.random.default_rng(8)
    width, batch = 256, 64
    assert fast._gram_is_cheaper(np.dtype(np.float64), batch, width, width)
    weights = [rng.normal(0, 1 / 16, size=(width, width)) for _ in range(4)]
    fast_flow, reference = both(rng.normal(size=(batch, width)), weights, get_activation("tanh"))
    assert_same_results(fast_flow, reference, atol=1e-13)


def test_the_gram_route_declines_where_the_inner_product_cancels() -> None:
    # Identical samples, and a gradient that sums to zero over the batch: H^T D is exactly 0,
    # while H H^T and D D^T are not, so <H H^T, D D^T> is rounding noise.
    rng = np.random.default_rng(9)
    h = np.tile(rng.normal(size=(1, 256)), (64, 1))
    d = rng.normal(size=(64, 256))
    d -= d.mean(axis=0)
    assert fast._gram_norms(h, d) is None
    fine = rng.normal(size=(64, 256))
    np.testing.assert_allclose(fast._gram_norms(h, fine), np.linalg.norm(h.T @ fine), rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("scale", [0.7, 30.0])  # a few saturated units; most of them saturated
def test_large_saturated_layers_give_the_reference_results(activation: str, scale: float) -> None:
    # 8192 outputs a layer: the one-layer schedule, whose slim slope cache keeps `a` and only
    # the slopes `a` cannot give exactly (at scale 0.7), or every slope (at 30).
    rng = np.random.default_rng(12)
    width, batch, depth = 128, 64, 12
    weights = [rng.normal(0, scale / np.sqrt(width), size=(width, width)) for _ in range(depth)]
    x = rng.normal(size=(batch, width))
    fast_flow, reference = both(x, weights, get_activation(activation))
    assert_same_results(fast_flow, reference)


def test_an_upstream_in_fortran_order_keeps_the_exact_saturated_slopes() -> None:
    # Units saturated beyond |z| = 19, where 1 - a^2 is 0: the fast engine must use the exact
    # slopes it kept, whatever the memory order of the upstream gradient.
    rng = np.random.default_rng(15)
    weights = [rng.normal(0, 1 / np.sqrt(128), size=(128, 128)) for _ in range(2)]
    weights[1][:, :8] *= 400.0  # eight units saturate hard in the top layer
    x = rng.normal(size=(64, 128))
    upstream = np.zeros((64, 128))
    upstream[:, :8] = 1.0  # the loss reads only the saturated units
    tanh = get_activation("tanh")
    fast_flow, reference = both(x, weights, tanh, upstream=np.asfortranarray(upstream))
    assert np.isfinite(reference.log10_grad_norms).all()
    assert_same_results(fast_flow, reference)


def test_a_network_whose_forward_pass_overflowed_leaves_its_stack_alone() -> None:
    rng = np.random.default_rng(17)
    weights = list(rng.normal(0, 1 / np.sqrt(8), size=(200, 4, 8, 8)))
    for w in weights[:8]:
        w[1] *= 1e40  # trial 1 overflows within the first layers
    x = rng.normal(size=(4, 2, 8))
    fast_flow, reference = both(x, weights, get_activation("gelu"))
    assert reference.trial_overflow_layer[1] > 0
    assert reference.trial_overflow_layer[[0, 2, 3]].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(fast_flow.trial_overflow_layer, reference.trial_overflow_layer)
    healthy = [0, 2, 3]
    assert np.isfinite(fast_flow.log10_grad_norms[healthy]).all()
    np.testing.assert_allclose(
        fast_flow.log10_grad_norms[healthy], reference.log10_grad_norms[healthy], atol=1e-12
    )


# Python 3.12+ warns about fork() in a process with threads: that hazard is what is tested.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_process_can_still_run_stacks_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VANGRAD_NUM_THREADS", "2")
    rng = np.random.default_rng(18)
    weights = list(rng.normal(0, 1 / 8, size=(3, 4, 64, 64)))
    x = rng.normal(size=(32, 64))
    assert fast._thread_parts(x, weights, (4,), upstream=None, keep_grads=False) == 2
    expected = _log10_grad_norms(x, weights)  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_run_and_report, args=(x, weights, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the thread pool it inherited")
    np.testing.assert_array_equal(queue.get(timeout=5), expected)


def _log10_grad_norms(x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    return fast.run_fast(x, weights, get_activation("tanh")).log10_grad_norms


def _run_and_report(x: np.ndarray, weights: list[np.ndarray], queue: object) -> None:
    queue.put(_log10_grad_norms(x, weights))


def test_vangrad_changes_no_process_wide_setting() -> None:
    # Run in a fresh process: the settings a library could change, before and after a run on
    # both engines (threads included); and no vangrad module holds ctypes, through which
    # glibc's mallopt used to be called.
    code = """
import os, sys
import numpy as np
def settings():
    return dict(os.environ), np.geterr(), np.get_printoptions(), sys.getswitchinterval()
before = settings()
import vangrad
for engine in ("fast", "reference"):
    os.environ["VANGRAD_ENGINE"] = engine
    setup = {"activation": "tanh", "init": "he_normal", "batch_size": 64, "trials": 8}
    vangrad.simulate(depth=3, width=64, **setup)
del os.environ["VANGRAD_ENGINE"]
modules = [m for name, m in sys.modules.items() if name.split(".")[0] == "vangrad"]
print(settings() == before, any("ctypes" in vars(m) for m in modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["True", "False"], result.stdout + result.stderr
