"""The residual settings: `True` (identity skips) and `"post"` (the activation after the sum)."""

from __future__ import annotations

import numpy as np
import pytest

from vangrad import backprop, simulate
from vangrad._validation import RESIDUALS

pytestmark = pytest.mark.usefixtures("engine")


def test_the_settings_are_declared_once() -> None:
    assert list(RESIDUALS) == [False, True, "post"]


def test_the_post_block_is_the_activation_of_the_sum() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4))
    weights = [rng.normal(0, 0.5, size=(4, 4)) for _ in range(3)]
    h = x
    for w in weights:
        h = np.maximum(h + h @ w, 0.0)
    flow = backprop(x, weights, "relu", residual="post")
    np.testing.assert_allclose(flow.output, h, rtol=1e-14)
    assert flow.residual == "post"


def test_a_post_block_of_zero_weights_passes_only_the_active_units() -> None:
    """With W = 0 the block is phi(h): its Jacobian is the slopes, not the identity."""
    x = np.array([[1.0, -2.0, 3.0]])
    flow = backprop(x, [np.zeros((3, 3))], "relu", residual="post", keep_grads=True)
    np.testing.assert_array_equal(flow.grads[0], [[1.0, 0.0, 1.0]])
    identity = backprop(x, [np.zeros((3, 3))], "relu", residual=True, keep_grads=True)
    np.testing.assert_array_equal(identity.grads[0], [[1.0, 1.0, 1.0]])


def test_simulate_runs_the_post_block_on_the_same_weights() -> None:
    setup = {"activation": "relu", "init": "he_normal", "batch_size": 4, "trials": 2, "seed": 3}
    post = simulate(6, 8, **setup, residual="post")
    assert post.residual == "post"
    assert np.all(np.isfinite(post.log10_grad_norms))
    assert not np.array_equal(post.output, simulate(6, 8, **setup, residual=True).output)


@pytest.mark.parametrize(
    ("value", "error"), [("identity", ValueError), ("pre", ValueError), (1, TypeError)]
)
def test_a_bad_residual_setting_names_the_choices(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"residual must be False, True or 'post', got"):
        backprop(np.ones((2, 3)), [np.eye(3)], "relu", residual=value)  # type: ignore[arg-type]
    with pytest.raises(error, match=r"residual must be False, True or 'post'"):
        simulate(2, 3, activation="relu", init="he_normal", batch_size=2, residual=value)  # type: ignore[arg-type]


def test_the_post_block_needs_equal_widths() -> None:
    with pytest.raises(ValueError, match=r"needs every layer to keep its width"):
        backprop(np.ones((2, 3)), [np.ones((3, 4))], "relu", residual="post")
