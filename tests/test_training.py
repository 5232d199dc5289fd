"""The training loop: its gradients, its update rule, its records, its data and its errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vangrad import get_activation
from vangrad.datasets import spirals
from vangrad.training import (
    Network,
    layer_outputs,
    loss_and_gradients,
    make_network,
    predict_proba,
    train,
)

# Every result here holds on both engines (VANGRAD_ENGINE=reference and fast).
pytestmark = pytest.mark.usefixtures("engine")

ARCHITECTURES = {
    "sigmoid": {"activation": "sigmoid", "init": "xavier_normal"},
    "tanh-residual": {"activation": "tanh", "init": "xavier_normal", "residual": True},
    "tanh-batchnorm": {"activation": "tanh", "init": "lecun_normal", "batchnorm": True},
    "elu-residual-batchnorm": {
        "activation": "elu",
        "init": "he_normal",
        "residual": True,
        "batchnorm": True,
    },
}


def _small_problem(classes: int = 3, n: int = 7, features: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = np.arange(n) % classes
    return x, y


def _with_random_biases(net: Network, seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return replace(net, biases=tuple(rng.normal(0, 0.3, size=b.shape) for b in net.biases))


def _numerical_gradient(net: Network, x: np.ndarray, y: np.ndarray, kind: str, index: int):
    """Central differences of the actual loss with respect to every entry of one parameter."""
    params = list(getattr(net, kind))
    grad = np.zeros_like(params[index])
    eps = 1e-6
    for entry in np.ndindex(grad.shape):
        values = []
        for sign in (1.0, -1.0):
            moved = params[index].copy()
            moved[entry] += sign * eps
            changed = [*params[:index], moved, *params[index + 1 :]]
            values.append(loss_and_gradients(replace(net, **{kind: tuple(changed)}), x, y).loss)
        grad[entry] = (values[0] - values[1]) / (2 * eps)
    return grad


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_gradients_match_finite_differences_of_the_loss(name: str) -> None:
    x, y = _small_problem()
    net = make_network(2, 3, depth=3, width=4, seed=1, **ARCHITECTURES[name])
    net = _with_random_biases(net, seed=2)
    grads = loss_and_gradients(net, x, y)
    # The first layer, a middle one, and the readout (computed outside the engine).
    for index in (0, 1, net.depth):
        numeric_w = _numerical_gradient(net, x, y, "weights", index)
        assert grads.weights[index].shape == net.weights[index].shape
        np.testing.assert_allclose(grads.weights[index], numeric_w, rtol=1e-5, atol=1e-8)
        numeric_b = _numerical_gradient(net, x, y, "biases", index)
        np.testing.assert_allclose(grads.biases[index], numeric_b, rtol=1e-5, atol=1e-8)


def test_loss_and_accuracy_are_the_cross_entropy_and_hits_of_the_probabilities() -> None:
    x, y = _small_problem(n=9)
    net = make_network(2, 3, depth=2, width=5, activation="tanh", init="xavier_normal", seed=3)
    p = predict_proba(net, x)
    grads = loss_and_gradients(net, x, y)
    assert grads.loss == pytest.approx(-np.mean(np.log(p[np.arange(9), y])), rel=1e-12)
    assert grads.accuracy == pytest.approx(np.mean(p.argmax(axis=1) == y))


def test_residual_network_embeds_the_input_and_skips_every_layer() -> None:
    # With every weight at zero and tanh(0) = 0, each residual layer passes its input on
    # unchanged, so the readout sees the zero-padded input: logits = x @ W_out[:2].
    net = make_network(2, 3, depth=4, width=5, activation="tanh", init="he_normal", residual=True)
    readout = np.random.default_rng(4).normal(size=(5, 3))
    zeros = tuple(np.zeros_like(w) for w in net.weights[:-1])
    net = replace(net, weights=(*zeros, readout))
    x, _ = _small_problem(n=6)
    logits = x @ readout[:2]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predict_proba(net, x), expected, rtol=1e-12)


def test_training_lowers_the_loss_on_an_easy_problem() -> None:
    x, y = spirals(60, turns=0.25, noise=0.02, seed=1)
    net = make_network(2, 2, depth=3, width=16, activation="tanh", init="xavier_normal", seed=0)
    before = loss_and_gradients(net, x, y)
    result = train(net, x, y, steps=150, batch_size=30, learning_rate=0.2, momentum=0.5)
    after = loss_and_gradients(result.network, x, y)
    assert after.loss < 0.3 * before.loss
    assert after.accuracy > 0.95
    # train does not change the network it was given.
    assert loss_and_gradients(net, x, y).loss == before.loss


def _pairs(first, second):
    return zip(first, second, strict=True)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_momentum_updates_follow_the_heavy_ball_rule(momentum: float) -> None:
    # Full batches: every step sees all the data, so the gradients can be recomputed here.
    x, y = _small_problem(n=8)
    net = make_network(2, 3, depth=2, width=4, activation="sigmoid", init="xavier_normal")
    lr = 0.3
    weights, biases = list(net.weights), list(net.biases)
    weight_velocity = [np.zeros_like(w) for w in weights]
    bias_velocity = [np.zeros_like(b) for b in biases]
    for _ in range(3):
        grads = loss_and_gradients(replace(net, weights=tuple(weights), biases=tuple(biases)), x, y)
        weight_velocity = [momentum * v + g for v, g in _pairs(weight_velocity, grads.weights)]
        bias_velocity = [momentum * v + g for v, g in _pairs(bias_velocity, grads.biases)]
        weights = [w - lr * v for w, v in _pairs(weights, weight_velocity)]
        biases = [b - lr * v for b, v in _pairs(biases, bias_velocity)]
    result = train(net, x, y, steps=3, batch_size=8, learning_rate=lr, momentum=momentum)
    trained_params = [*result.network.weights, *result.network.biases]
    for trained, expected in _pairs(trained_params, weights + biases):
        np.testing.assert_allclose(trained, expected, rtol=1e-12, atol=1e-15)


def test_momentum_with_a_constant_gradient_matches_the_closed_form() -> None:
    # Only the readout bias moves the loss here (every weight is zero, tanh(0) = 0), and with
    # all samples of one class its gradient changes as the bias moves; so use the first step's
    # velocity identity instead: after k steps of a gradient g that stays g, the displacement
    # is lr * g * sum_{t=1..k} (1 - mu^t) / (1 - mu). A tiny learning rate keeps g constant
    # to about lr * k relative.
    x = np.zeros((4, 2))
    y = np.array([0, 1, 1, 1])
    net = make_network(2, 2, depth=1, width=3, activation="tanh", init="he_normal")
    net = replace(net, weights=tuple(np.zeros_like(w) for w in net.weights))
    g = loss_and_gradients(net, x, y).biases[-1]
    lr, mu, k = 1e-7, 0.8, 5
    result = train(net, x, y, steps=k, batch_size=4, learning_rate=lr, momentum=mu)
    factor = sum((1 - mu**t) / (1 - mu) for t in range(1, k + 1))
    np.testing.assert_allclose(result.network.biases[-1], -lr * g * factor, rtol=1e-5)


def test_records_are_the_applied_updates_and_gradients() -> None:
    x, y = spirals(10, seed=3)
    net = make_network(2, 2, depth=3, width=6, activation="relu", init="he_normal", seed=5)
    opts = {"batch_size": 20, "learning_rate": 0.05, "momentum": 0.9, "seed": 7}
    steps = 4
    result = train(net, x, y, steps=steps, **opts)
    assert result.steps == steps
    assert result.grad_norms.shape == result.update_ratios.shape == (steps, 4)
    before = net
    for step in range(steps):
        # The same seed draws the same batches, so a shorter run stops at this step's weights.
        after = train(net, x, y, steps=step + 1, **opts).network
        grads = loss_and_gradients(before, x, y)
        assert result.loss[step] == pytest.approx(grads.loss, rel=1e-12)
        assert result.accuracy[step] == pytest.approx(grads.accuracy)
        for layer in range(4):
            norm = np.linalg.norm(grads.weights[layer])
            assert result.grad_norms[step, layer] == pytest.approx(norm, rel=1e-12)
            moved = np.linalg.norm(after.weights[layer] - before.weights[layer])
            ratio = moved / np.linalg.norm(before.weights[layer])
            assert result.update_ratios[step, layer] == pytest.approx(ratio, rel=1e-9)
        before = after


def test_mini_batches_are_drawn_from_the_seed() -> None:
    x, y = spirals(20, seed=0)
    net = make_network(2, 2, depth=2, width=4, activation="tanh", init="xavier_normal")
    opts = {"steps": 5, "batch_size": 8, "learning_rate": 0.1}
    first, again = train(net, x, y, **opts, seed=1), train(net, x, y, **opts, seed=1)
    other = train(net, x, y, **opts, seed=2)
    np.testing.assert_array_equal(first.loss, again.loss)
    assert not np.array_equal(first.loss, other.loss)


def test_divergence_is_reported_with_its_step() -> None:
    x, y = spirals(20, seed=0)
    net = make_network(2, 2, depth=6, width=8, activation="linear", init="he_normal")
    with pytest.raises(ValueError, match=r"stopped being finite at step \d+"):
        train(net, x, y, steps=100, batch_size=40, learning_rate=10.0, momentum=0.9)


# --- the data set --------------------------------------------------------------------------------


def test_spirals_shapes_labels_and_seed() -> None:
    x, y = spirals(50, classes=3, seed=4)
    assert x.shape == (150, 2)
    assert np.bincount(y).tolist() == [50, 50, 50]
    np.testing.assert_array_equal(spirals(50, classes=3, seed=4)[0], x)
    assert not np.array_equal(spirals(50, classes=3, seed=5)[0], x)


def test_spiral_points_without_noise_lie_on_their_arm() -> None:
    turns = 1.5
    x, y = spirals(200, classes=2, turns=turns, noise=0.0, seed=0)
    radius = np.hypot(x[:, 0], x[:, 1])
    assert radius.max() <= 1.0
    # angle = 2 pi (turns * r + c / classes), modulo a full turn.
    offset = np.angle(x[:, 0] + 1j * x[:, 1]) / (2 * np.pi) - turns * radius - y / 2
    np.testing.assert_allclose(np.cos(2 * np.pi * offset), 1.0, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_per_class": 0}, ValueError, "n_per_class"),
        ({"n_per_class": 2.5}, TypeError, "n_per_class"),
        ({"n_per_class": 5, "classes": 1}, ValueError, "classes"),
        ({"n_per_class": 5, "turns": 0}, ValueError, "turns"),
        ({"n_per_class": 5, "noise": -0.1}, ValueError, "noise"),
        ({"n_per_class": 5, "seed": "x"}, TypeError, "seed"),
    ],
)
def test_spirals_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        spirals(**kwargs)


# --- errors --------------------------------------------------------------------------------------

_NET = {"depth": 2, "width": 4, "activation": "tanh", "init": "xavier_normal"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_classes": 1}, ValueError, "n_classes"),
        ({"depth": 0}, ValueError, "depth"),
        ({"width": True}, TypeError, "width"),
        ({"activation": "sigmod"}, ValueError, "did you mean 'sigmoid'"),
        ({"init": "normal"}, ValueError, "weight_scale is required"),
        ({"residual": "yes"}, TypeError, "residual"),
        ({"residual": True, "width": 1}, ValueError, "width must be >= n_features"),
    ],
)
def test_make_network_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    options = {"n_features": 2, "n_classes": 2, **_NET, **kwargs}
    with pytest.raises(error, match=match):
        make_network(**options)


def test_network_checks_its_shapes() -> None:
    tanh = get_activation("tanh")
    with pytest.raises(ValueError, match="at least two weight matrices"):
        Network((np.ones((2, 3)),), (np.ones(3),), tanh)
    with pytest.raises(ValueError, match="do not chain"):
        Network((np.ones((2, 3)), np.ones((4, 2))), (np.ones(3), np.ones(2)), tanh)
    with pytest.raises(ValueError, match="do not chain"):
        Network((np.ones((2, 3)), np.ones((3, 2))), (np.ones(2), np.ones(2)), tanh)
    with pytest.raises(TypeError, match="activation must be an Activation"):
        Network((np.ones((2, 3)), np.ones((3, 2))), (np.ones(3), np.ones(2)), "tanh")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"batch_size": 11}, ValueError, "at most the 10 samples"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"learning_rate": "fast"}, TypeError, "learning_rate"),
        ({"momentum": 1.0}, ValueError, r"momentum must be a number in \[0, 1\)"),
        ({"momentum": -0.5}, ValueError, "momentum"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_train_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    x, y = _small_problem(classes=2, n=10)
    net = make_network(2, 2, **_NET)
    options = {"steps": 1, "batch_size": 5, "learning_rate": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        train(net, x, y, **options)


@pytest.mark.parametrize(
    ("x", "y", "error", "match"),
    [
        (np.ones((4, 3)), np.zeros(4, int), ValueError, r"x must have shape \(batch >= 1, 2\)"),
        (np.ones((4, 2)), np.zeros(4), TypeError, "integer class labels"),
        (np.ones((4, 2)), np.zeros(3, int), ValueError, "one label per row"),
        (np.ones((4, 2)), np.array([0, 1, 2, 0]), ValueError, r"labels must lie in 0\.\.1"),
        (np.full((4, 2), np.nan), np.zeros(4, int), ValueError, "finite"),
        ("abc", np.zeros(4, int), TypeError, "numeric array"),
    ],
)
def test_data_errors(x: object, y: object, error: type[Exception], match: str) -> None:
    net = make_network(2, 2, **_NET)
    with pytest.raises(error, match=match):
        loss_and_gradients(net, x, y)


def test_network_argument_and_batchnorm_batch_errors() -> None:
    x, y = _small_problem(classes=2, n=4)
    with pytest.raises(TypeError, match="network must be a Network"):
        train([np.ones((2, 2))], x, y, steps=1, batch_size=2, learning_rate=0.1)
    bn = make_network(2, 2, **_NET, batchnorm=True)
    with pytest.raises(ValueError, match=r"at least 2 samples.*got batch_size=1"):
        train(bn, x, y, steps=1, batch_size=1, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"at least 2 samples.*got x of shape \(1, "):
        predict_proba(bn, x[:1])


def test_update_ratio_map_averages_the_log_ratio_over_each_column_of_steps() -> None:
    from vangrad.plotting import plot_update_ratios

    x, y = spirals(10, seed=0)
    net = make_network(2, 2, depth=2, width=4, activation="tanh", init="xavier_normal")
    result = train(net, x, y, steps=7, batch_size=8, learning_rate=0.1)
    ax = plot_update_ratios(result, steps_per_column=3)
    shown = np.asarray(ax.collections[0].get_array()).reshape(3, 3)  # layers x columns
    logs = np.log10(result.update_ratios).T
    expected = np.stack(
        [logs[:, 0:3].mean(axis=1), logs[:, 3:6].mean(axis=1), logs[:, 6:].mean(axis=1)], axis=1
    )
    np.testing.assert_allclose(shown, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="steps_per_column"):
        plot_update_ratios(result, steps_per_column=0)


# --- Adam ----------------------------------------------------------------------------------------


def test_adam_first_step_is_the_bias_corrected_sign_step() -> None:
    # At t = 1, m_hat = g and s_hat = g**2 exactly (the bias corrections undo the zero start),
    # so every entry moves by lr * g / (|g| + eps): by lr itself wherever |g| >> eps. Without
    # the corrections the step would be lr * (1 - b1) / sqrt(1 - b2), about 3.16 lr.
    x, y = _small_problem(n=8)
    net = make_network(2, 3, depth=3, width=4, activation="tanh", init="xavier_normal", seed=2)
    net = _with_random_biases(net, seed=3)
    grads = loss_and_gradients(net, x, y)
    lr, eps = 0.01, 1e-8
    result = train(net, x, y, steps=1, batch_size=8, learning_rate=lr, optimizer="adam")
    before = [*net.weights, *net.biases]
    after = [*result.network.weights, *result.network.biases]
    for p0, p1, g in zip(before, after, [*grads.weights, *grads.biases], strict=True):
        np.testing.assert_allclose(p0 - p1, lr * g / (np.abs(g) + eps), rtol=1e-12, atol=1e-18)
        large = np.abs(g) > 1e-5
        assert large.any()
        np.testing.assert_allclose(np.abs(p0 - p1)[large], lr, rtol=1e-3)


def test_adam_second_step_by_hand() -> None:
    # Two hand-computed steps of one entry with gradients 2 then -1 (b1 = 0.9, b2 = 0.999):
    # m = 0.2, s = 0.004, then m = 0.9 * 0.2 - 0.1 = 0.08, s = 0.999 * 0.004 + 0.001 = 0.004996;
    # m_hat = 0.08 / (1 - 0.81) = 0.42105..., s_hat = 0.004996 / (1 - 0.998001) = 2.49925...
    from vangrad.training import _check_rule

    rule = _check_rule("adam", 0.1, 0.0, None, None)
    first, second = np.zeros(1), np.zeros(1)
    step_one = rule.update(np.array([2.0]), first, second, 0)
    np.testing.assert_allclose(step_one, 0.1 * 2.0 / (2.0 + 1e-8), rtol=1e-14)
    step_two = rule.update(np.array([-1.0]), first, second, 1)
    np.testing.assert_allclose(first, 0.08, rtol=1e-14)
    np.testing.assert_allclose(second, 0.004996, rtol=1e-14)
    m_hat, s_hat = 0.08 / 0.19, 0.004996 / 0.001999
    np.testing.assert_allclose(step_two, 0.1 * m_hat / (np.sqrt(s_hat) + 1e-8), rtol=1e-14)
    assert step_two[0] == pytest.approx(0.0266335, rel=1e-5)


@pytest.mark.parametrize("settings", [{}, {"betas": (0.5, 0.9), "epsilon": 1e-3}])
def test_adam_steps_follow_algorithm_1_of_kingma_and_ba(settings: dict) -> None:
    x, y = _small_problem(n=8)
    net = make_network(2, 3, depth=2, width=4, activation="sigmoid", init="xavier_normal")
    lr = 0.05
    b1, b2 = settings.get("betas", (0.9, 0.999))
    eps = settings.get("epsilon", 1e-8)
    params = [*net.weights, *net.biases]
    m = [np.zeros_like(p) for p in params]
    s = [np.zeros_like(p) for p in params]
    n = len(net.weights)
    for t in range(1, 5):
        current = replace(net, weights=tuple(params[:n]), biases=tuple(params[n:]))
        grads = loss_and_gradients(current, x, y)
        g = [*grads.weights, *grads.biases]
        m = [b1 * mi + (1 - b1) * gi for mi, gi in _pairs(m, g)]
        s = [b2 * si + (1 - b2) * gi**2 for si, gi in _pairs(s, g)]
        params = [
            p - lr * (mi / (1 - b1**t)) / (np.sqrt(si / (1 - b2**t)) + eps)
            for p, mi, si in zip(params, m, s, strict=True)
        ]
    result = train(net, x, y, steps=4, batch_size=8, learning_rate=lr, optimizer="adam", **settings)
    for trained, expected in _pairs([*result.network.weights, *result.network.biases], params):
        np.testing.assert_allclose(trained, expected, rtol=1e-12, atol=1e-15)


def test_adam_records_its_updates_and_learns() -> None:
    x, y = spirals(60, turns=0.25, noise=0.02, seed=1)
    net = make_network(2, 2, depth=3, width=16, activation="tanh", init="xavier_normal", seed=0)
    result = train(net, x, y, steps=150, batch_size=30, learning_rate=0.01, optimizer="adam")
    assert loss_and_gradients(result.network, x, y).accuracy > 0.95
    first = train(net, x, y, steps=1, batch_size=30, learning_rate=0.01, optimizer="adam")
    moved = np.linalg.norm(first.network.weights[1] - net.weights[1])
    assert first.update_ratios[0, 1] == pytest.approx(moved / np.linalg.norm(net.weights[1]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"optimizer": "adma"}, ValueError, "did you mean 'adam'"),
        ({"optimizer": 1}, TypeError, "optimizer"),
        ({"optimizer": "adam", "momentum": 0.9}, ValueError, "momentum is for optimizer='sgd'"),
        ({"betas": (0.9, 0.99)}, ValueError, "betas is for optimizer='adam'"),
        ({"epsilon": 1e-6}, ValueError, "epsilon is for optimizer='adam'"),
        ({"optimizer": "adam", "betas": 0.9}, TypeError, "betas must be a pair"),
        ({"optimizer": "adam", "betas": (0.9, 1.0)}, ValueError, r"betas\[1\] must be"),
        ({"optimizer": "adam", "betas": (-0.1, 0.9)}, ValueError, r"betas\[0\]"),
        ({"optimizer": "adam", "epsilon": 0.0}, ValueError, "epsilon must be"),
    ],
)
def test_optimizer_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    x, y = _small_problem(classes=2, n=10)
    net = make_network(2, 2, **_NET)
    with pytest.raises(error, match=match):
        train(net, x, y, steps=1, batch_size=5, learning_rate=0.1, **kwargs)


def test_layer_outputs_are_the_engines_forward_pass() -> None:
    x, _ = _small_problem(n=6)
    for name in sorted(ARCHITECTURES):
        net = make_network(2, 3, depth=3, width=4, seed=1, **ARCHITECTURES[name])
        outputs = layer_outputs(net, x)
        assert len(outputs) == net.depth + 1
        np.testing.assert_array_equal(outputs[0], x)
        logits = outputs[-1] @ net.weights[-1] + net.biases[-1]
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(p, predict_proba(net, x), rtol=1e-12)
    # Without residuals or normalisation each layer is phi(h_{l-1} W_l + b_l).
    net = _with_random_biases(make_network(2, 3, depth=3, width=4, **ARCHITECTURES["sigmoid"]), 4)
    outputs = layer_outputs(net, x)
    for layer in range(1, 4):
        z = outputs[layer - 1] @ net.weights[layer - 1] + net.biases[layer - 1]
        np.testing.assert_allclose(outputs[layer], 1 / (1 + np.exp(-z)), rtol=1e-12)
