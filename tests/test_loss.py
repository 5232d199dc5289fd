"""The named losses: `"sum"` (an upstream of ones) and `"random"` (a random upstream gradient)."""

from __future__ import annotations

import numpy as np
import pytest

from vangrad import LOSSES, backprop, get_initializer, simulate, sweep
from vangrad.engine import loss_upstream

SETUP = {"activation": "relu", "init": "he_normal", "batch_size": 8, "trials": 3}


def test_the_losses_are_declared_once() -> None:
    assert sorted(LOSSES) == ["random", "sum"]


def test_the_random_upstream_is_normal_scaled_to_the_norm_of_the_ones() -> None:
    g = loss_upstream("random", (4, 16, 32), np.random.default_rng(5))
    assert g.shape == (4, 16, 32)
    np.testing.assert_allclose(np.sqrt((g**2).sum(axis=(1, 2))), np.sqrt(16 * 32))
    # The direction is the standard normal draw's.
    raw = np.random.default_rng(5).standard_normal((4, 16, 32))
    np.testing.assert_allclose(g / raw, (g / raw)[:, :1, :1] * np.ones_like(g))
    assert loss_upstream("sum", (16, 32), np.random.default_rng(5)) is None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_simulate_random_loss_is_backprop_on_the_documented_draws(dtype: str) -> None:
    """The weights first, the upstream last: the same weights as with the sum loss."""
    flow = simulate(10, 6, **SETUP, seed=4, loss="random", dtype=dtype, keep_grads=True)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 6), dtype=dtype)
    weights = get_initializer("he_normal").sample(rng, 6, 6, trials=30, dtype=dtype)
    weights = list(weights.reshape(10, 3, 6, 6))
    upstream = loss_upstream("random", (3, 8, 6), rng, dtype)
    expected = backprop(x, weights, "relu", upstream=upstream)
    np.testing.assert_array_equal(flow.log10_grad_norms, expected.log10_grad_norms)
    np.testing.assert_array_equal(flow.grads[-1], upstream)
    same_weights = simulate(10, 6, **SETUP, seed=4, loss="sum", dtype=dtype)
    np.testing.assert_array_equal(flow.output, same_weights.output)


def test_backprop_random_loss_is_reproducible_from_its_seed() -> None:
    rng = np.random.default_rng(0)
    x, weights = rng.normal(size=(5, 4)), [rng.normal(size=(4, 4)) for _ in range(6)]
    first = backprop(x, weights, "tanh", loss="random", seed=3, keep_grads=True)
    again = backprop(x, weights, "tanh", loss="random", seed=np.random.default_rng(3))
    other = backprop(x, weights, "tanh", loss="random", seed=4)
    np.testing.assert_array_equal(first.log10_grad_norms, again.log10_grad_norms)
    assert not np.array_equal(first.log10_grad_norms, other.log10_grad_norms)
    upstream = loss_upstream("random", (5, 4), np.random.default_rng(3))
    np.testing.assert_array_equal(first.grads[-1], upstream)
    np.testing.assert_array_equal(
        backprop(x, weights, "tanh", upstream=upstream).log10_grad_norms, first.log10_grad_norms
    )


def test_simulate_and_sweep_are_reproducible_with_the_random_loss() -> None:
    a = simulate(5, 4, **SETUP, seed=2, loss="random")
    b = simulate(5, 4, **SETUP, seed=2, loss="random")
    np.testing.assert_array_equal(a.log10_grad_norms, b.log10_grad_norms)
    grid = {"width": 4, "batch_size": 4, "trials": 3, "seed": 1, "loss": "random"}
    np.testing.assert_array_equal(sweep([3, 6], **grid).median, sweep([3, 6], **grid).median)


@pytest.mark.parametrize(("batchnorm", "residual"), [(False, False), (True, False), (False, True)])
def test_both_engines_give_the_same_random_loss_results(
    monkeypatch: pytest.MonkeyPatch, batchnorm: bool, residual: bool
) -> None:
    results = {}
    for engine in ("reference", "fast"):
        monkeypatch.setenv("VANGRAD_ENGINE", engine)
        flow = simulate(
            40, 16, **SETUP, seed=7, loss="random", batchnorm=batchnorm, residual=residual
        )
        grid = sweep(
            [5, 20],
            width=8,
            batch_size=4,
            trials=4,
            inits=["normal"],
            weight_scales=[0.5, 1.0],
            batchnorm=batchnorm,
            residual=residual,
            loss="random",
        )
        results[engine] = flow.log10_grad_norms, grid.log10_input_grad
    for fast, reference in zip(results["fast"], results["reference"], strict=True):
        np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)


def test_sweep_with_the_random_loss_matches_backprop_on_each_network() -> None:
    grid = sweep(
        [4], width=5, batch_size=3, trials=2, inits=["normal"], weight_scales=[0.7], loss="random"
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5))
    base = get_initializer("normal").sample(rng, 5, 5, weight_scale=1.0, trials=8)
    base = base.reshape(4, 2, 5, 5)
    upstream = loss_upstream("random", (2, 3, 5), rng)
    for trial in range(2):
        flow = backprop(x[trial], [0.7 * w[trial] for w in base], "tanh", upstream=upstream[trial])
        assert grid.log10_input_grad[0, 0, 0, 0, 0, 0, trial] == pytest.approx(
            flow.log10_grad_norms[0], abs=1e-12
        )
    assert grid.loss == "random"
    assert grid.log10_output_grad == pytest.approx(0.5 * np.log10(15))


def test_the_sum_loss_keeps_its_results() -> None:
    """Naming the default changes nothing."""
    default, named = simulate(5, 4, **SETUP), simulate(5, 4, **SETUP, loss="sum")
    np.testing.assert_array_equal(default.log10_grad_norms, named.log10_grad_norms)


@pytest.mark.parametrize(
    "call",
    [
        lambda: simulate(3, 4, **SETUP, loss="gaussian"),
        lambda: sweep([3], width=4, batch_size=2, loss="mse"),
        lambda: backprop(np.ones((2, 3)), [np.eye(3)], "tanh", loss="Random"),
    ],
)
def test_an_unknown_loss_is_named_with_the_choices(call: object) -> None:
    with pytest.raises(ValueError, match=r"unknown loss '.*': expected one of \['random', 'sum'\]"):
        call()  # type: ignore[operator]


def test_a_loss_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"loss must be a string, one of \['random', 'sum'\]"):
        simulate(3, 4, **SETUP, loss=None)  # type: ignore[arg-type]


def test_an_upstream_and_the_random_loss_together_are_refused() -> None:
    with pytest.raises(ValueError, match=r"give either upstream .* or loss='random', not both"):
        backprop(np.ones((2, 3)), [np.eye(3)], "tanh", upstream=np.ones((2, 3)), loss="random")


def test_a_bad_seed_for_the_random_loss_is_named() -> None:
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0"):
        backprop(np.ones((2, 3)), [np.eye(3)], "tanh", loss="random", seed=-1)
