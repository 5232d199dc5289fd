"""The recurrent training loop: its gradients, its updates, its records and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from vangrad import clip_by_norm
from vangrad.recurrent_training import (
    RecurrentModel,
    adding_problem,
    make_recurrent_model,
    recurrent_loss_and_gradients,
    train_recurrent,
)
from vangrad.recurrent_training import _with as with_params


def finite_differences(model: RecurrentModel, x: np.ndarray, y: np.ndarray) -> dict:
    """Central differences of the loss in every entry of every parameter."""
    eps = 1e-6
    params = model.all_params()
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for entry in np.ndindex(value.shape):
            values = []
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in params.items()}
                moved[name][entry] += sign * eps
                values.append(recurrent_loss_and_gradients(with_params(model, moved), x, y).loss)
            grad[entry] = (values[0] - values[1]) / (2 * eps)
        grads[name] = grad
    return grads


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm"])
def test_every_gradient_matches_finite_differences_of_the_loss(cell: str) -> None:
    # Small random biases (the forget bias included), so that no bias gradient is checked at a
    # point of symmetry, and two outputs, so that the readout's shapes are exercised.
    rng = np.random.default_rng(3)
    model = make_recurrent_model(cell, 2, 3, 2, forget_bias=1.0 if cell == "lstm" else 0.0, seed=1)
    params = model.all_params()
    for name in ("bias_ih", "bias_hh", "readout_bias"):
        params[name] = params[name] + rng.normal(0, 0.3, size=params[name].shape)
    model = with_params(model, params)
    x, y = rng.normal(size=(5, 4, 2)), rng.normal(size=(4, 2))
    measured = recurrent_loss_and_gradients(model, x, y).grads
    expected = finite_differences(model, x, y)
    assert sorted(measured) == sorted(expected)
    for name, grad in expected.items():
        assert measured[name].shape == grad.shape, name
        np.testing.assert_allclose(measured[name], grad, rtol=1e-6, atol=1e-9, err_msg=name)


def test_loss_is_the_mean_squared_error_of_the_readout_of_the_last_state() -> None:
    x, y = adding_problem(6, 5, seed=0)
    model = make_recurrent_model("rnn_tanh", 2, 4, seed=0)
    result = recurrent_loss_and_gradients(model, x, y)
    h_last = result.flow.hidden_states[-1]
    predictions = h_last @ model.readout_weight + model.readout_bias
    np.testing.assert_allclose(result.predictions, predictions)
    assert result.loss == pytest.approx(float(np.mean((predictions - y) ** 2)))


def test_adding_problem_marks_one_number_in_each_half_and_sums_them() -> None:
    length = 9
    x, y = adding_problem(length, 200, seed=4)
    values, markers = x[..., 0], x[..., 1]
    assert x.shape == (length, 200, 2)
    assert ((values >= 0) & (values <= 1)).all()
    np.testing.assert_array_equal(markers[: length // 2].sum(axis=0), 1)
    np.testing.assert_array_equal(markers[length // 2 :].sum(axis=0), 1)
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(axis=0))
    # The memoryless baseline, always 1: the variance of the sum of two uniforms, 1/6.
    _, many = adding_problem(20, 40_000, seed=5)
    assert float(np.mean((many - 1) ** 2)) == pytest.approx(1 / 6, rel=0.03)
    again, _ = adding_problem(length, 200, seed=4)
    np.testing.assert_array_equal(x, again)


def test_training_lowers_the_loss_on_a_short_adding_problem() -> None:
    x, y = adding_problem(8, 512, seed=0)
    model = make_recurrent_model("lstm", 2, 8, forget_bias=1.0, seed=0)
    result = train_recurrent(model, x, y, steps=200, batch_size=32, learning_rate=0.03)
    assert result.loss[-20:].mean() < 0.2 * result.loss[:20].mean()
    test_x, test_y = adding_problem(8, 256, seed=1)
    assert recurrent_loss_and_gradients(result.model, test_x, test_y).loss < 0.05
    # The model passed in is not changed.
    assert recurrent_loss_and_gradients(model, test_x, test_y).loss > 0.1


def test_one_step_is_adam_on_the_gradients_of_its_batch() -> None:
    # Adam's first step moves every entry by learning_rate * g / (|g| + epsilon): its sign.
    x, y = adding_problem(5, 6, seed=0)
    model = make_recurrent_model("rnn_tanh", 2, 3, seed=0)
    rate = 1e-3
    result = train_recurrent(model, x, y, steps=1, batch_size=6, learning_rate=rate)
    grads = recurrent_loss_and_gradients(model, x, y).grads
    for name, before in model.all_params().items():
        after = result.model.all_params()[name]
        expected = before - rate * grads[name] / (np.abs(grads[name]) + 1e-8)
        np.testing.assert_allclose(after, expected, rtol=1e-12, atol=1e-15, err_msg=name)


def test_records_are_the_losses_norms_and_per_step_gradients_of_the_batches() -> None:
    x, y = adding_problem(6, 4, seed=0)
    model = make_recurrent_model("lstm", 2, 3, forget_bias=1.0, seed=0)
    # The whole set as the batch, so each step's batch is known (only its order is random).
    opts = {"batch_size": 4, "learning_rate": 0.01, "max_norm": 0.05, "seed": 2}
    result = train_recurrent(model, x, y, steps=3, record_at=[0, 2], **opts)
    assert result.steps == 3
    assert sorted(result.log10_grad_norms) == [0, 2]
    for step in range(3):
        start = model if step == 0 else train_recurrent(model, x, y, steps=step, **opts).model
        measured = recurrent_loss_and_gradients(start, x, y)
        assert result.loss[step] == pytest.approx(measured.loss, rel=1e-12)
        _, norm = clip_by_norm(list(measured.grads.values()), 1.0)
        assert result.grad_norm[step] == pytest.approx(norm, rel=1e-9)
        assert result.clipped[step] == (norm > 0.05)
        if step in result.log10_grad_norms:
            np.testing.assert_allclose(
                result.log10_grad_norms[step], measured.flow.log10_grad_norms, atol=1e-12
            )
    assert result.log10_grad_norms[0].shape == (7,)


def test_clipping_bounds_every_update_of_the_first_step() -> None:
    # With a tiny max_norm the clipped gradient is far below Adam's epsilon in no entry, so
    # the first step is still learning_rate * sign(g); what changes is the recorded flag.
    x, y = adding_problem(5, 8, seed=0)
    model = make_recurrent_model("rnn_tanh", 2, 3, seed=0)
    result = train_recurrent(model, x, y, steps=2, batch_size=8, learning_rate=0.01, max_norm=1e-3)
    assert result.clipped.all()
    assert (result.grad_norm > 1e-3).all()


def test_divergence_is_reported_with_its_step() -> None:
    x, y = adding_problem(5, 8, seed=0)
    model = make_recurrent_model("rnn_relu", 2, 4, init_hh="identity", gain=3.0, seed=0)
    huge = 1e200 * x
    with pytest.raises(ValueError, match=r"stopped being finite at step 0"):
        train_recurrent(model, huge, y, steps=3, batch_size=8, learning_rate=0.1)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, x, y: train_recurrent(m, x, y, steps=1, batch_size=9, learning_rate=0.1),
         ValueError, r"batch_size must be at most the 8 sequences"),
        (lambda m, x, y: train_recurrent(m, x[..., :1], y, steps=1, batch_size=2,
                                         learning_rate=0.1),
         ValueError, r"x must have shape \(T, batch, 2\)"),
        (lambda m, x, y: train_recurrent(m, x, y[:3], steps=1, batch_size=2, learning_rate=0.1),
         ValueError, r"y must have shape \(8, 1\)"),
        (lambda m, x, y: train_recurrent(m, x, y, steps=2, batch_size=2, learning_rate=0.1,
                                         record_at=[2]),
         ValueError, r"record_at\[0\] must be a step from 0 to 1"),
        (lambda m, x, y: train_recurrent(m, x, y, steps=2, batch_size=2, learning_rate=0.1,
                                         record_at="0"),
         TypeError, r"record_at must be a list of steps"),
        (lambda m, x, y: train_recurrent(m, x, y, steps=2, batch_size=2, learning_rate=0.1,
                                         max_norm=0.0),
         ValueError, r"max_norm must be a finite number > 0"),
        (lambda m, x, y: recurrent_loss_and_gradients("lstm", x, y),
         TypeError, r"model must be a RecurrentModel"),
        (lambda m, x, y: adding_problem(1, 4), ValueError, r"length must be an integer >= 2"),
        (lambda m, x, y: make_recurrent_model("lsmt", 2, 3), ValueError, r"did you mean 'lstm'"),
        (lambda m, x, y: make_recurrent_model("gru", 2, 3, forget_bias=1.0),
         ValueError, r"forget_bias is the LSTM's"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(call, error: type[Exception], match: str) -> None:
    x, y = adding_problem(5, 8, seed=0)
    model = make_recurrent_model("rnn_tanh", 2, 3, seed=0)
    with pytest.raises(error, match=match):
        call(model, x, y)
