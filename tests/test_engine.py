"""The science of the engine, on both engines: gradients against finite differences, log space,
stacks, statistics, seed 004. `test_fast_engine.py` holds the fast engine to the reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vangrad import (
    ACTIVATIONS,
    Activation,
    backprop,
    get_activation,
    get_initializer,
    simulate,
    sweep,
)
from vangrad.engine import run_network
from vangrad.plotting import plot_comparison, plot_sweep
from vangrad.training import loss_and_gradients, make_network, predict_proba, train

pytestmark = pytest.mark.usefixtures("engine")

NAMES = sorted(ACTIVATIONS)
EPS = 1e-5


# --- a plain reference: no rescaling, no caches, float64 ------------------------------------------


def forward(
    x: np.ndarray,
    weights: list[np.ndarray],
    phi: Callable[[np.ndarray], np.ndarray],
    *,
    batchnorm: bool = False,
    residual: bool | str,
    biases: list[np.ndarray] | None = None,
    layernorm: bool = False,
) -> np.ndarray:
    h = x
    for layer, w in enumerate(weights):
        z = h @ w
        if biases is not None:
            z = z + biases[layer]
        if batchnorm:
            z = (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + EPS)
        if layernorm:  # each sample (row) over its units
            mean, var = z.mean(axis=-1, keepdims=True), z.var(axis=-1, keepdims=True)
            z = (z - mean) / np.sqrt(var + EPS)
        if residual == "post":
            h = phi(h + z)
            continue
        a = phi(z)
        h = h + a if residual else a
    return h


def central_differences(loss: Callable[[], float], array: np.ndarray, step: float) -> np.ndarray:
    """d loss / d array, perturbing `array` in place one element at a time."""
    grad = np.empty_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + step
        up = loss()
        array[index] = saved - step
        down = loss()
        array[index] = saved
        grad[index] = (up - down) / (2 * step)
    return grad


def small_network(
    residual: bool | str, seed: int = 0, *, layernorm: bool = False
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    # Layer normalisation maps a layer of 2 units to about (+1, -1) or (-1, +1) whatever z
    # is, so its output barely depends on anything: a top layer of 3 units for it instead.
    widths = [4, 4, 4, 4] if residual else [3, 5, 4, 3] if layernorm else [3, 5, 4, 2]
    x = rng.normal(size=(6, widths[0]))
    weights = [
        rng.normal(0, 1 / np.sqrt(n_in), size=(n_in, n_out)) for n_in, n_out in pairwise(widths)
    ]
    upstream = rng.normal(size=(6, widths[-1]))
    return x, weights, upstream


SOFTSIGN = Activation(
    name="softsign",
    description="z / (1 + |z|), a custom activation",
    function=lambda z: z / (1 + np.abs(z)),
    derivative=lambda z: 1 / (1 + np.abs(z)) ** 2,
    derivative_max=1.0,
    squashing=True,
)
ENGINE_ACTIVATIONS = [*NAMES, SOFTSIGN]
ACTIVATION_IDS = [*NAMES, "custom-softsign"]


NORMS = {"": {}, "batchnorm": {"batchnorm": True}, "layernorm": {"layernorm": True}}


@pytest.mark.parametrize("residual", [False, True, "post"], ids=["plain", "residual", "post"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("activation", ENGINE_ACTIVATIONS, ids=ACTIVATION_IDS)
def test_gradients_match_finite_differences(
    activation: str | Activation, norm: str, residual: bool | str
) -> None:
    x, weights, upstream = small_network(residual, layernorm=norm == "layernorm")
    act = get_activation(activation)
    flow = backprop(
        x,
        weights,
        activation,
        **NORMS[norm],
        residual=residual,
        upstream=upstream,
        keep_grads=True,
    )

    def loss() -> float:
        h = forward(x, weights, act.function, residual=residual, **NORMS[norm])
        return float(np.sum(h * upstream))

    assert flow.grads is not None
    assert flow.weight_grads is not None
    # Layer normalisation over 4 units curves the loss more: the central difference's O(step^2)
    # error reached 2e-4 of the gradient at step 1e-4 (ELU, residual), 2e-6 at 1e-5, 5e-8 at 1e-6.
    step = 1e-6 if norm == "layernorm" else 1e-5
    np.testing.assert_allclose(
        flow.grads[0], central_differences(loss, x, step), rtol=1e-6, atol=1e-8
    )
    for layer, w in enumerate(weights):
        numerical = central_differences(loss, w, step)
        np.testing.assert_allclose(flow.weight_grads[layer], numerical, rtol=1e-6, atol=1e-8)
    # The norms are the norms of the returned gradients.
    np.testing.assert_allclose(
        flow.log10_grad_norms, [np.log10(np.linalg.norm(g)) for g in flow.grads], rtol=1e-12
    )
    np.testing.assert_allclose(
        flow.log10_weight_grad_norms,
        [np.log10(np.linalg.norm(g)) for g in flow.weight_grads],
        rtol=1e-12,
    )
    assert flow.overflow_layer is None


@pytest.mark.parametrize("residual", [False, True, "post"], ids=["plain", "residual", "post"])
@pytest.mark.parametrize("layernorm", [False, True], ids=["", "layernorm"])
@pytest.mark.parametrize("activation", NAMES)
def test_bias_gradients_match_finite_differences(
    activation: str, layernorm: bool, residual: bool | str
) -> None:
    x, weights, upstream = small_network(residual, layernorm=layernorm)
    rng = np.random.default_rng(1)
    biases = [rng.normal(0, 0.5, size=w.shape[1]) for w in weights]
    act = get_activation(activation)
    setup = {"residual": residual, "layernorm": layernorm}
    flow = backprop(
        x, weights, activation, biases=biases, **setup, upstream=upstream, keep_grads=True
    )

    def loss() -> float:
        h = forward(x, weights, act.function, batchnorm=False, biases=biases, **setup)
        return float(np.sum(h * upstream))

    assert flow.bias_grads is not None
    assert flow.weight_grads is not None
    assert flow.log10_bias_grad_norms is not None
    step = 1e-6 if layernorm else 1e-5  # as in test_gradients_match_finite_differences
    np.testing.assert_allclose(
        flow.grads[0], central_differences(loss, x, step), rtol=1e-6, atol=1e-8
    )
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
        numerical_w = central_differences(loss, w, step)
        np.testing.assert_allclose(flow.weight_grads[layer], numerical_w, rtol=1e-6, atol=1e-8)
        numerical_b = central_differences(loss, b, step)
        np.testing.assert_allclose(flow.bias_grads[layer], numerical_b, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        flow.log10_bias_grad_norms,
        [np.log10(np.linalg.norm(g)) for g in flow.bias_grads],
        rtol=1e-12,
    )


def test_a_bias_before_batchnorm_cancels_out() -> None:
    x, weights, upstream = small_network(residual=False)
    biases = [np.full(w.shape[1], 3.0) for w in weights]
    with_biases = backprop(x, weights, "tanh", biases=biases, batchnorm=True, upstream=upstream)
    without = backprop(x, weights, "tanh", batchnorm=True, upstream=upstream)
    np.testing.assert_allclose(with_biases.log10_grad_norms, without.log10_grad_norms, rtol=1e-9)
    assert with_biases.log10_bias_grad_norms is not None
    # Batch normalisation subtracts the batch mean, and the bias with it: exactly zero.
    assert with_biases.log10_bias_grad_norms.tolist() == [-np.inf] * len(weights)
    with_kept = backprop(x, weights, "tanh", biases=biases, batchnorm=True, keep_grads=True)
    assert with_kept.bias_grads is not None
    assert all(np.all(db == 0) for db in with_kept.bias_grads)


def test_a_gradient_equal_for_every_sample_does_not_pass_batchnorm() -> None:
    # Linear layers: dLoss/dz_hat of the sum loss is the same for every sample, and batch
    # normalisation's backward pass removes its batch mean, leaving exactly zero (not noise).
    x, weights, _ = small_network(residual=False)
    flow = backprop(x, weights, "linear", batchnorm=True)
    assert np.isneginf(flow.log10_grad_norms[:-1]).all()
    assert np.isfinite(flow.log10_grad_norms[-1])


# --- layer normalisation: per sample, over the units ---------------------------------------------


def test_a_bias_before_layernorm_does_not_cancel() -> None:
    # Layer normalisation removes each sample's mean over the units: a bias is not a constant
    # of the normalised axis, so its gradient is not zero; only its own mean over the units
    # cancels, so the bias gradient of every layer sums to zero over the units.
    x, weights, upstream = small_network(residual=False, layernorm=True)
    rng = np.random.default_rng(2)
    biases = [rng.normal(0, 0.5, size=w.shape[1]) for w in weights]
    flow = backprop(
        x, weights, "tanh", biases=biases, layernorm=True, upstream=upstream, keep_grads=True
    )
    assert flow.bias_grads is not None
    assert flow.log10_bias_grad_norms is not None
    assert np.all(flow.log10_bias_grad_norms > -3)  # far from zero (the norms are near 1)
    for db in flow.bias_grads:
        assert abs(db.sum()) < 1e-12 * np.abs(db).max()
    # A bias that is the same for every unit is exactly such a mean: it changes nothing.
    constant = [np.full(w.shape[1], 3.0) for w in weights]
    shifted = backprop(x, weights, "tanh", biases=constant, layernorm=True, upstream=upstream)
    without = backprop(x, weights, "tanh", layernorm=True, upstream=upstream)
    np.testing.assert_allclose(shifted.log10_grad_norms, without.log10_grad_norms, rtol=1e-9)


def test_a_gradient_equal_for_every_unit_does_not_pass_layernorm() -> None:
    # The sum loss's ones through linear layers: dLoss/dz_hat is the same for every unit of a
    # sample, and layer normalisation's backward pass removes each sample's mean over the
    # units, leaving exactly zero below the top layer, as batch normalisation does.
    x, weights, _ = small_network(residual=False, layernorm=True)
    flow = backprop(x, weights, "linear", layernorm=True)
    assert np.isneginf(flow.log10_grad_norms[:-1]).all()
    assert np.isfinite(flow.log10_grad_norms[-1])
    # With a nonlinear activation only the slopes' spread over the units passes: through the
    # top layer the sum loss's gradient lost 10^-0.30, the random loss's grew by 10^0.05.
    setup = {"depth": 20, "width": 64, "init": "he_normal", "batch_size": 16, "trials": 8}
    relative = {}
    for loss in ("sum", "random"):
        flow = simulate(**setup, activation="tanh", layernorm=True, loss=loss)
        relative[loss] = np.median(flow.log10_grad_norms[:, -2] - flow.log10_grad_norms[:, -1])
    assert relative["sum"] < relative["random"] - 0.2


@pytest.mark.parametrize("residual", [False, True, "post"], ids=["plain", "residual", "post"])
def test_layernorm_is_per_sample_and_runs_at_batch_size_1(residual: bool | str) -> None:
    # Each sample is normalised with its own statistics: its gradients are the same whether it
    # runs in a batch or alone, at batch size 1, which batch normalisation refuses.
    x, weights, upstream = small_network(residual, layernorm=True)
    setup = {"layernorm": True, "residual": residual, "keep_grads": True}
    batch = backprop(x, weights, "gelu", upstream=upstream, **setup)
    assert batch.grads is not None
    for b in range(x.shape[0]):
        alone = backprop(x[b : b + 1], weights, "gelu", upstream=upstream[b : b + 1], **setup)
        assert alone.grads is not None
        assert alone.weight_grads is not None
        assert np.isfinite(alone.log10_grad_norms).all()
        np.testing.assert_allclose(alone.grads[0][0], batch.grads[0][b], rtol=1e-10)
        np.testing.assert_allclose(alone.output[0], batch.output[b], rtol=1e-12)
    with pytest.raises(ValueError, match=r"batchnorm=True needs a batch of at least 2"):
        backprop(x[:1], weights, "gelu", batchnorm=True, residual=residual)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_leaves_a_constant_row_at_zero(dtype: type) -> None:
    # A sample whose units all have the same z: normalised exactly to 0, not to a rounding
    # error divided by sqrt(1e-5).
    x = np.array([[1e13, 1e13, 1e13], [1.0, -2.0, 0.5]], dtype=dtype)
    flow = backprop(x[:1], [np.eye(3, dtype=dtype)], "tanh", layernorm=True)
    assert flow.activation_std.tolist() == [0.0]
    assert flow.output.tolist() == [[0.0, 0.0, 0.0]]


def test_layernorm_in_float32_stays_close_to_float64() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 6))
    weights = [rng.normal(0, 0.5, size=(6, 6)) for _ in range(30)]
    biases = [rng.normal(0, 0.1, size=6) for _ in range(30)]
    setup = {"layernorm": True, "residual": True, "keep_grads": True}
    single = backprop(
        x.astype(np.float32),
        [w.astype(np.float32) for w in weights],
        "tanh",
        biases=[b.astype(np.float32) for b in biases],
        **setup,
    )
    double = backprop(x, weights, "tanh", biases=biases, **setup)
    assert single.grads is not None
    assert {g.dtype for g in single.grads} == {np.dtype(np.float32)}
    assert single.layernorm
    assert double.layernorm
    assert not double.batchnorm
    np.testing.assert_allclose(single.log10_grad_norms, double.log10_grad_norms, atol=1e-4)
    np.testing.assert_allclose(
        single.log10_bias_grad_norms, double.log10_bias_grad_norms, atol=1e-4
    )


def test_the_output_is_the_forward_pass() -> None:
    x, weights, _ = small_network(residual=True)
    act = get_activation("gelu")
    flow = backprop(x, weights, act, residual=True)
    expected = forward(x, weights, act.function, batchnorm=False, residual=True)
    np.testing.assert_allclose(flow.output, expected, rtol=1e-13)


def test_stacked_biases_equal_running_each_trial_alone() -> None:
    rng = np.random.default_rng(5)
    trials, batch, width, depth = 3, 4, 3, 5
    x = rng.normal(size=(batch, width))
    weights = [rng.normal(size=(trials, width, width)) for _ in range(depth)]
    biases = [rng.normal(size=(trials, width)) for _ in range(depth)]
    stacked = backprop(x, weights, "tanh", biases=biases)
    assert stacked.log10_bias_grad_norms is not None
    for t in range(trials):
        alone = backprop(x, [w[t] for w in weights], "tanh", biases=[b[t] for b in biases])
        assert alone.log10_bias_grad_norms is not None
        np.testing.assert_allclose(stacked.log10_grad_norms[t], alone.log10_grad_norms, rtol=1e-10)
        np.testing.assert_allclose(
            stacked.log10_bias_grad_norms[t], alone.log10_bias_grad_norms, rtol=1e-10
        )


def test_without_biases_there_are_no_bias_gradients() -> None:
    x, weights, _ = small_network(residual=False)
    flow = backprop(x, weights, "tanh", keep_grads=True)
    assert flow.log10_bias_grad_norms is None
    assert flow.bias_grads is None


def test_default_upstream_is_ones_and_upstream_broadcasts() -> None:
    x, weights, _ = small_network(residual=False)
    default = backprop(x, weights, "tanh", keep_grads=True)
    ones = backprop(x, weights, "tanh", upstream=np.ones((6, 2)), keep_grads=True)
    np.testing.assert_array_equal(default.log10_grad_norms, ones.log10_grad_norms)
    doubled = backprop(x, weights, "tanh", upstream=2.0)
    np.testing.assert_allclose(
        doubled.log10_grad_norms, default.log10_grad_norms + np.log10(2), rtol=1e-12
    )
    # The default loss is the sum of h_L: check dLoss/dx by finite differences.
    act = get_activation("tanh")

    def loss() -> float:
        return float(np.sum(forward(x, weights, act.function, batchnorm=False, residual=False)))

    assert default.grads is not None
    np.testing.assert_allclose(
        default.grads[0], central_differences(loss, x, 1e-5), rtol=1e-6, atol=1e-9
    )


def test_zero_upstream_gives_minus_infinity_not_nan() -> None:
    x, weights, _ = small_network(residual=False)
    flow = backprop(x, weights, "sigmoid", upstream=np.zeros((6, 2)))
    assert np.all(flow.log10_grad_norms == -np.inf)
    assert np.all(flow.grad_norms == 0.0)


# --- stacks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("norm", "residual"), [("", False), ("batchnorm", True), ("layernorm", True)]
)
@pytest.mark.parametrize("shared_input", [False, True], ids=["own-x", "shared-x"])
def test_each_trial_of_a_stack_equals_running_it_alone(
    norm: str, residual: bool, shared_input: bool
) -> None:
    rng = np.random.default_rng(7)
    trials, batch, width, depth = 5, 4, 3, 6
    x = rng.normal(size=(batch, width) if shared_input else (trials, batch, width))
    weights = [rng.normal(size=(trials, width, width)) for _ in range(depth)]
    upstream = rng.normal(size=(trials, batch, width))
    stacked = backprop(
        x, weights, "gelu", **NORMS[norm], residual=residual, upstream=upstream, keep_grads=True
    )
    assert stacked.log10_grad_norms.shape == (trials, depth + 1)
    assert stacked.log10_weight_grad_norms.shape == (trials, depth)
    assert stacked.saturated_fraction.shape == (trials, depth)
    assert stacked.trial_overflow_layer.shape == (trials,)
    for t in range(trials):
        alone = backprop(
            x if shared_input else x[t],
            [w[t] for w in weights],
            "gelu",
            **NORMS[norm],
            residual=residual,
            upstream=upstream[t],
            keep_grads=True,
        )
        for field in (
            "log10_grad_norms",
            "log10_weight_grad_norms",
            "activation_mean",
            "activation_std",
            "saturated_fraction",
        ):
            np.testing.assert_allclose(
                getattr(stacked, field)[t], getattr(alone, field), rtol=1e-10, err_msg=field
            )
        assert stacked.grads is not None
        assert alone.grads is not None
        np.testing.assert_allclose(stacked.grads[0][t], alone.grads[0], rtol=1e-10)


def test_float32_stays_float32() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 5))
    weights = [rng.normal(0, 0.5, size=(5, 5)) for _ in range(10)]
    single = backprop(
        x.astype(np.float32), [w.astype(np.float32) for w in weights], "tanh", keep_grads=True
    )
    double = backprop(x, weights, "tanh", keep_grads=True)
    assert single.grads is not None
    assert single.weight_grads is not None
    assert {g.dtype for g in single.grads + single.weight_grads} == {np.dtype(np.float32)}
    np.testing.assert_allclose(single.log10_grad_norms, double.log10_grad_norms, atol=1e-4)


# --- log space ------------------------------------------------------------------------------------


def test_log_norms_stay_exact_where_plain_norms_underflow() -> None:
    rng = np.random.default_rng(0)
    width, depth = 8, 3000
    weights = list(rng.normal(0, 1 / np.sqrt(width), size=(depth, width, width)))
    flow = backprop(rng.normal(size=(8, width)), weights, "sigmoid")
    log_norms = flow.log10_grad_norms
    assert np.all(np.isfinite(log_norms))
    assert np.all(np.isfinite(flow.log10_weight_grad_norms))
    assert log_norms[0] < -1000
    assert flow.grad_norms[0] == 0.0  # the plain float underflows; the log does not
    # Every sigmoid layer shrinks the gradient (0.25 * ||W||_2 < 1 here), at a steady rate.
    assert np.all(np.diff(log_norms) > 0)
    layers = np.arange(depth + 1)
    slope, intercept = np.polyfit(layers, log_norms, 1)
    residuals = log_norms - (slope * layers + intercept)
    r_squared = 1 - residuals.var() / log_norms.var()
    assert r_squared > 0.999
    assert 0.3 < slope < 1.0


def plain_backward(
    x: np.ndarray, weights: list[np.ndarray], act: Activation
) -> tuple[list[float], list[float]]:
    """Textbook backprop without rescaling: norms of dLoss/dh_l and dLoss/dW_l."""
    hs, zs = [x], []
    for w in weights:
        zs.append(hs[-1] @ w)
        hs.append(act.function(zs[-1]))
    g = np.ones_like(hs[-1])
    h_norms, w_norms = [np.linalg.norm(g)], []
    for layer in reversed(range(len(weights))):
        dz = g * act.derivative(zs[layer])
        w_norms.append(np.linalg.norm(hs[layer].T @ dz))
        g = dz @ weights[layer].T
        h_norms.append(np.linalg.norm(g))
    return h_norms[::-1], w_norms[::-1]


def test_log_norms_agree_with_plain_float64_at_depth_200() -> None:
    rng = np.random.default_rng(1)
    width, depth = 8, 200
    x = rng.normal(size=(4, width))
    weights = list(rng.normal(0, 1 / np.sqrt(width), size=(depth, width, width)))
    act = ACTIVATIONS["sigmoid"]
    h_norms, w_norms = plain_backward(x, weights, act)
    assert 0 < min(h_norms) < 1e-100  # small, but not yet underflowed
    flow = backprop(x, weights, act)
    np.testing.assert_allclose(flow.log10_grad_norms, np.log10(h_norms), rtol=1e-11)
    np.testing.assert_allclose(flow.log10_weight_grad_norms, np.log10(w_norms), rtol=1e-11)
    np.testing.assert_allclose(flow.grad_norms, h_norms, rtol=1e-10)


# --- properties ---------------------------------------------------------------------------------


@st.composite
def networks(draw: st.DrawFn, *, square: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    seed = draw(st.integers(0, 2**32 - 1))
    depth = draw(st.integers(1, 12))
    batch = draw(st.integers(1, 6))
    if square:
        widths = [draw(st.integers(1, 8))] * (depth + 1)
    else:
        widths = draw(st.lists(st.integers(1, 8), min_size=depth + 1, max_size=depth + 1))
    scale = draw(st.floats(0.05, 5.0))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, scale, size=(n_in, n_out)) for n_in, n_out in pairwise(widths)]
    return rng.normal(size=(batch, widths[0])), weights


@settings(max_examples=60, deadline=None)
@given(networks(square=False))
def test_sigmoid_layer_shrinks_the_gradient_by_at_most_a_quarter_of_the_spectral_norm(
    network: tuple[np.ndarray, list[np.ndarray]],
) -> None:
    x, weights = network
    log_norms = backprop(x, weights, "sigmoid").log10_grad_norms
    for layer, w in enumerate(weights, start=1):
        bound = np.log10(0.25 * np.linalg.norm(w, ord=2))
        assert log_norms[layer - 1] - log_norms[layer] <= bound + 1e-9


@settings(max_examples=60, deadline=None)
@given(networks(square=True), st.floats(0.01, 3.9))
def test_residual_input_gradient_never_vanishes(
    network: tuple[np.ndarray, list[np.ndarray]], target: float
) -> None:
    # g_(l-1) = g_l + (g_l * phi'(z)) W^T, so with s = 0.25 ||W||_2 < 1 the norm changes by a
    # factor within [1 - s, 1 + s] per layer: never zero, however deep.
    x, weights = network
    weights = [w * (target / np.linalg.norm(w, ord=2)) for w in weights]
    log_norms = backprop(x, weights, "sigmoid", residual=True).log10_grad_norms
    s = 0.25 * target
    ratios = log_norms[:-1] - log_norms[1:]
    assert np.all(ratios >= np.log10(1 - s) - 1e-9)
    assert np.all(ratios <= np.log10(1 + s) + 1e-9)
    assert np.isfinite(log_norms[0])


def test_deep_residual_network_keeps_its_input_gradient() -> None:
    rng = np.random.default_rng(2)
    width, depth = 16, 500
    weights = list(rng.normal(0, 0.1 / np.sqrt(width), size=(depth, width, width)))
    x = rng.normal(size=(8, width))
    plain = backprop(x, weights, "tanh").log10_grad_norms
    residual = backprop(x, weights, "tanh", residual=True).log10_grad_norms
    assert plain[0] < -300
    assert residual[0] > residual[-1] - 1


# --- statistics and overflow ---------------------------------------------------------------------


def test_activation_statistics_and_saturation() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 6))
    weights = [rng.normal(0, 1.0, size=(6, 6)) for _ in range(4)]
    flow = backprop(x, weights, "relu")
    h = x
    for layer, w in enumerate(weights):
        z = h @ w
        h = np.maximum(z, 0)
        assert flow.activation_mean[layer] == pytest.approx(h.mean())
        assert flow.activation_std[layer] == pytest.approx(h.std())
        # For ReLU, saturated means inactive (z <= 0): the dying-ReLU fraction.
        assert flow.saturated_fraction[layer] == pytest.approx(np.mean(z <= 0))
    # Leaky ReLU's slope 0.01 is not below 1% of 1: it never saturates.
    assert np.all(backprop(x, weights, "leaky_relu").saturated_fraction == 0)
    big = backprop(x, [w * 50 for w in weights], "tanh")
    assert big.saturated_fraction[-1] > 0.8  # saturated tanh units


def test_overflow_is_recorded_without_warnings() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 4))
    weights = [rng.normal(0, 10.0, size=(4, 4)) for _ in range(400)]
    flow = backprop(x, weights, "linear")  # warnings are errors in this suite
    h, first = x, None
    with np.errstate(over="ignore", invalid="ignore"):
        for layer, w in enumerate(weights, start=1):
            h = h @ w
            if first is None and not np.all(np.isfinite(h)):
                first = layer
    assert first is not None
    assert flow.overflow_layer == first
    assert flow.trial_overflow_layer.tolist() == first
    assert backprop(x, weights[: first - 1], "linear").overflow_layer is None


def test_overflow_is_recorded_per_trial() -> None:
    rng = np.random.default_rng(6)
    scales = np.array([1.0, 100.0])[:, None, None]
    weights = [rng.normal(size=(2, 3, 3)) * scales for _ in range(300)]
    flow = backprop(rng.normal(size=(2, 3)), weights, "linear")
    assert flow.trial_overflow_layer[0] == 0
    assert flow.trial_overflow_layer[1] > 0
    assert flow.overflow_layer == flow.trial_overflow_layer[1]


def test_keep_grads_off_returns_no_gradients() -> None:
    x, weights, _ = small_network(residual=False)
    flow = backprop(x, weights)
    assert flow.grads is None
    assert flow.weight_grads is None
    assert flow.depth == 3
    assert flow.activation is ACTIVATIONS["sigmoid"]


def test_inputs_are_not_modified() -> None:
    x, weights, upstream = small_network(residual=True)
    copies = [x.copy(), *(w.copy() for w in weights), upstream.copy()]
    backprop(x, weights, "linear", batchnorm=True, residual=True, upstream=upstream)
    for before, after in zip(copies, [x, *weights, upstream], strict=True):
        np.testing.assert_array_equal(before, after)


# --- the seed-004 bug ----------------------------------------------------------------------------


def seed004_recurrence(x: np.ndarray, weights: list[np.ndarray]) -> list[float]:
    """The buggy backward pass of seed 004, rewritten: it multiplies by tanh' of the layer's
    INPUT activation (1 - h_(l-1)^2) where the chain rule wants its OUTPUT (1 - h_l^2).

    Returns the gradient norm at every layer, input first.
    """
    hs = [x]
    for w in weights:
        hs.append(np.tanh(hs[-1] @ w))
    grad = np.ones_like(hs[-1])
    norms = [float(np.linalg.norm(grad))]
    for layer in range(len(weights) - 1, -1, -1):
        grad = (grad @ weights[layer].T) * (1.0 - hs[layer] ** 2)  # the bug: hs[layer]
        norms.append(float(np.linalg.norm(grad)))
    return norms[::-1]


def seed004_weights(scale: float) -> list[np.ndarray]:
    """The seed's weights: legacy seed 42, randn per layer, three scales drawn in sequence."""
    legacy = np.random.RandomState(42)
    drawn = {s: [legacy.randn(1, 1) * s for _ in range(20)] for s in (0.5, 1.0, 1.5)}
    return drawn[scale]


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5])
def test_seed004_bug_zeroes_the_input_gradient_while_the_engine_is_right(scale: float) -> None:
    x = np.array([[1.0]])
    weights = seed004_weights(scale)
    flow = backprop(x, weights, "tanh", keep_grads=True)
    assert flow.grads is not None

    probe = x.copy()

    def loss() -> float:
        return float(np.sum(forward(probe, weights, np.tanh, batchnorm=False, residual=False)))

    # The engine agrees with finite differences of the loss ...
    numerical = central_differences(loss, probe, 1e-6)
    np.testing.assert_allclose(flow.grads[0], numerical, rtol=1e-5)
    assert flow.grad_norms[0] > 0
    # ... while the seed's recurrence gives exactly 0 at the input: 1 - x**2 = 0 for x = 1.
    buggy = seed004_recurrence(x, weights)
    assert buggy[0] == 0.0
    # Elsewhere it is off by (1 - h_l**2) / (1 - h_L**2): not a rounding error.
    assert buggy[-1] == flow.grad_norms[-1] == 1.0


def test_seed004_recurrence_differs_by_orders_of_magnitude_for_other_inputs() -> None:
    x = np.array([[0.999]])
    weights = seed004_weights(1.5)
    buggy = seed004_recurrence(x, weights)
    correct = backprop(x, weights, "tanh").grad_norms
    assert correct[0] / buggy[0] > 100


# --- edge cases found in review ------------------------------------------------------------------


def test_norms_do_not_overflow_when_the_squares_would() -> None:
    # In float32 the squares of 1e20 overflow; the norm of a 2x2 block of 1e20 is 2e20.
    x = np.full((2, 2), 1e20, dtype=np.float32)
    flow = backprop(x, [np.eye(2, dtype=np.float32)], "linear", upstream=x)
    np.testing.assert_allclose(flow.log10_grad_norms, [np.log10(2e20)] * 2, rtol=1e-6)
    np.testing.assert_allclose(flow.log10_weight_grad_norms, [np.log10(2 * 2e40)], rtol=1e-6)


def test_norms_do_not_underflow_when_the_squares_would() -> None:
    x = np.full((2, 2), 1e-200)
    flow = backprop(x, [np.eye(2)], "linear", upstream=x)
    np.testing.assert_allclose(flow.log10_grad_norms, [np.log10(2e-200)] * 2, rtol=1e-12)


def test_upstream_that_overflows_the_network_dtype_is_refused() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    weights = [np.eye(3, dtype=np.float32)]
    with pytest.raises(ValueError, match=r"upstream overflows in float32"):
        backprop(x, weights, "linear", upstream=np.full((2, 3), 1e39))


def test_kept_gradients_are_zero_not_nan_where_the_scale_overflows() -> None:
    weights = [np.diag([1e10, 1e10])] * 40
    flow = backprop(
        np.full((1, 2), 1e-300), weights, "linear", upstream=[[1.0, 0.0]], keep_grads=True
    )
    assert flow.grads is not None
    assert not np.isnan(flow.grads[0]).any()
    assert flow.grads[0][0, 1] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_leaves_a_constant_column_at_zero(dtype: type) -> None:
    # Identical samples: every z column is constant, so the normalised z is exactly 0 and
    # tanh(0) = 0. A rounding error in the mean, divided by sqrt(1e-5), would not be.
    x = np.tile(np.array([[1e13, 1e5, -7.1]], dtype=dtype), (3, 1))
    flow = backprop(x, [np.eye(3, dtype=dtype)], "tanh", batchnorm=True)
    assert flow.activation_std.tolist() == [0.0]
    assert flow.activation_mean.tolist() == [0.0]


def test_custom_activation_with_a_constant_derivative() -> None:
    identity = Activation("identity", lambda z: z, lambda z: 1.0, 1.0, False)
    flow = backprop(np.ones((2, 3)), [np.eye(3)] * 3, identity)
    reference = backprop(np.ones((2, 3)), [np.eye(3)] * 3, "linear")
    np.testing.assert_allclose(flow.log10_grad_norms, reference.log10_grad_norms)


# --- layer normalisation through the callers: simulate, sweep, training --------------------------


def test_simulate_sweep_and_training_pass_layernorm_on() -> None:
    setup = {"width": 6, "activation": "tanh", "init": "xavier_normal", "trials": 3, "seed": 4}
    flow = simulate(depth=5, **setup, batch_size=1, layernorm=True)  # one sample is enough
    assert flow.layernorm
    assert not flow.batchnorm
    rng = np.random.default_rng(4)  # simulate's draws, in its order
    x = rng.standard_normal((1, 6))
    weights = get_initializer("xavier_normal").sample(rng, 6, 6, trials=15).reshape(5, 3, 6, 6)
    expected = backprop(x, list(weights), "tanh", layernorm=True)
    np.testing.assert_allclose(flow.log10_grad_norms, expected.log10_grad_norms, rtol=1e-12)

    # A sweep with layer normalisation measures the networks of the same sweep without it.
    options = {"width": 6, "batch_size": 3, "trials": 2, "residual": [False, True], "seed": 1}
    grid = sweep([4], **options, layernorm=True)
    assert grid.layernorm
    assert grid.batchnorm == (False,)
    assert grid.median.shape == sweep([4], **options).median.shape
    rng = np.random.default_rng(1)  # sweep's draws, in its order
    x = rng.standard_normal((2, 3, 6))
    base = get_initializer("xavier_normal").sample(rng, 6, 6, trials=8).reshape(4, 2, 6, 6)
    for r, residual in enumerate((False, True)):
        for t in range(2):
            alone = backprop(x[t], [w[t] for w in base], "tanh", layernorm=True, residual=residual)
            assert grid.log10_input_grad[0, 0, 0, r, 0, 0, t] == pytest.approx(
                alone.log10_grad_norms[0], abs=1e-12
            )
    ax = plot_comparison(grid)
    assert [label.get_text() for label in ax.get_xticklabels()] == [
        "layer norm",
        "layer norm\n+ residual",
    ]
    scales = {"width": 4, "batch_size": 2, "trials": 1, "weight_scales": [0.5, 1.0]}
    assert "layer norm" in plot_sweep(sweep([3, 5], **scales, layernorm=True)).get_title()
    plt.close("all")

    # Training: layer normalisation works with one sample per step, and the gradients the
    # classifier follows are those of its loss (finite differences of the first weight).
    net = make_network(2, 2, depth=3, width=5, activation="tanh", init="he_normal", layernorm=True)
    assert net.layernorm
    data = np.random.default_rng(5).normal(size=(4, 2))
    labels = np.array([0, 1, 1, 0])
    grads = loss_and_gradients(net, data[:1], labels[:1])
    assert all(np.all(np.isfinite(g)) for g in grads.weights)
    first = net.weights[0].copy()

    def loss() -> float:
        weights = (first, *net.weights[1:])
        return loss_and_gradients(replace(net, weights=weights), data, labels).loss

    full = loss_and_gradients(net, data, labels)
    np.testing.assert_allclose(
        full.weights[0], central_differences(loss, first, 1e-6), rtol=1e-6, atol=1e-9
    )
    # Per sample: each sample's probabilities do not depend on the rest of the batch.
    np.testing.assert_allclose(
        predict_proba(net, data)[2], predict_proba(net, data[2:3])[0], rtol=1e-12
    )
    result = train(net, data, labels, steps=3, batch_size=1, learning_rate=0.1)
    assert result.network.layernorm


def test_simulate_draws_biases_after_the_weights() -> None:
    setup = {"depth": 4, "width": 6, "activation": "tanh", "init": "xavier_normal", "trials": 3}
    plain = simulate(**setup, batch_size=5, keep_grads=True)
    zero = simulate(**setup, batch_size=5, bias_std=0.0)
    biased = simulate(**setup, batch_size=5, bias_std=0.5, keep_grads=True)
    np.testing.assert_array_equal(plain.log10_grad_norms, zero.log10_grad_norms)
    assert zero.log10_bias_grad_norms is None
    assert biased.log10_bias_grad_norms is not None
    assert biased.log10_bias_grad_norms.shape == (3, 4)
    assert not np.allclose(biased.log10_grad_norms, plain.log10_grad_norms)
    assert biased.bias_grads is not None
    assert biased.bias_grads[0].shape == (3, 6)


def test_upstream_may_be_a_function_of_the_output() -> None:
    x, weights, _ = small_network(residual=False)
    target = np.linspace(-1, 1, 12).reshape(6, 2)
    seen: list[np.ndarray] = []

    def mse_grad(h: np.ndarray) -> np.ndarray:
        seen.append(h.copy())
        return h - target

    flow = run_network(x, weights, get_activation("tanh"), upstream=mse_grad)
    act = get_activation("tanh")
    output = forward(x, weights, act.function, batchnorm=False, residual=False)
    np.testing.assert_allclose(seen[0], output, rtol=1e-12)
    direct = backprop(x, weights, "tanh", upstream=output - target)
    np.testing.assert_allclose(flow.log10_grad_norms, direct.log10_grad_norms, rtol=1e-12)


def test_a_custom_activation_that_returns_a_scalar_is_broadcast() -> None:
    half = Activation("half", lambda z: np.float64(0.5), lambda z: 0.0, 1.0, True)
    rng = np.random.default_rng(16)
    flow = backprop(rng.normal(size=(4, 3)), [rng.normal(size=(3, 3)) for _ in range(3)], half)
    assert flow.log10_grad_norms[:-1].tolist() == [-np.inf] * 3  # phi' = 0: no gradient
    np.testing.assert_allclose(flow.activation_mean, 0.5)


@pytest.mark.parametrize("part", ["function", "derivative"])
@pytest.mark.parametrize("width", [3, 128])  # small layers run in groups, large ones alone
def test_a_custom_activation_of_the_wrong_shape_is_named(part: str, width: int) -> None:
    def bad(z: np.ndarray) -> np.ndarray:
        return z[:1]

    function, derivative = (bad, np.ones_like) if part == "function" else (np.copy, bad)
    broken = Activation("broken", function, derivative, 1.0, False)
    rng = np.random.default_rng(17)
    weights = [rng.normal(size=(width, width)) for _ in range(3)]
    with pytest.raises(TypeError, match=rf"activation 'broken': its {part} returned an array"):
        backprop(rng.normal(size=(64, width)), weights, broken)
