"""The mean-field theory: quadrature against closed forms, fixed points, the critical line, and
the predicted per-layer gradient factor chi_1 against the engine's measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vangrad import INITIALIZERS, get_activation
from vangrad.theory import (
    chi,
    chi_1,
    critical_line,
    critical_sigma_w2,
    depth_scale,
    fixed_point,
    gaussian_expectation,
    init_sigma_w2,
    jacobian_singular_values,
    phase_diagram,
    predicted_jacobian_variance,
    predicted_log10_grad_norms,
    simulate_mean_field,
    variance_map,
    variance_sequence,
)

# Every result here holds on both engines (VANGRAD_ENGINE=reference and fast).
pytestmark = pytest.mark.usefixtures("engine")

# Variances on both sides of the switch from Gauss-Hermite (q <= 1) to the composite rule.
QS = np.array([1e-8, 0.01, 0.3, 1.0, 1.5, 5.0, 45.0, 200.0])


def _dense_reference(function, q: float) -> float:
    """E[function(x)], x ~ N(0, q), by a trapezoid rule on 2 million points over 14 std devs."""
    s = math.sqrt(q)
    x = np.linspace(-14 * s, 14 * s, 2_000_001)
    density = np.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2 * math.pi))
    return float(np.trapezoid(function(x) * density, x))


def test_quadrature_is_exact_for_polynomials() -> None:
    # E[x^2] = q and E[x^4] = 3 q^2: both rules integrate low-degree polynomials exactly.
    np.testing.assert_allclose(gaussian_expectation(np.square, QS), QS, rtol=1e-12)
    np.testing.assert_allclose(gaussian_expectation(lambda x: x**4, QS), 3 * QS**2, rtol=1e-11)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
@pytest.mark.parametrize("q", [0.3, 1.5, 45.0, 200.0])
def test_quadrature_matches_a_dense_reference(name: str, q: float) -> None:
    act = get_activation(name)
    for function in (act.function, act.derivative):
        got = gaussian_expectation(lambda x, f=function: f(x) ** 2, [q])[0]
        assert got == pytest.approx(_dense_reference(lambda x, f=function: f(x) ** 2, q), rel=1e-7)


def test_relu_closed_form_matches_kink_aware_quadrature() -> None:
    relu = get_activation("relu")
    # Panels meet at the kink, so piecewise-polynomial integrands come out exact.
    value = gaussian_expectation(lambda x: relu.function(x) ** 2, QS, activation_kinked=True)
    slope = gaussian_expectation(lambda x: relu.derivative(x) ** 2, QS, activation_kinked=True)
    np.testing.assert_allclose(value, QS / 2, rtol=1e-12)
    np.testing.assert_allclose(slope, 0.5, rtol=1e-12)
    np.testing.assert_allclose(variance_map(QS, 2.0, 0.0, "relu"), QS, rtol=1e-15)
    np.testing.assert_allclose(chi(QS, 3.0, 0.0, "relu"), 1.5, rtol=1e-15)
    np.testing.assert_allclose(chi_1([1.0, 2.0, 3.0], 0.0, "relu"), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(chi_1([0.5, 2.0], 0.0, "linear"), [0.5, 2.0])
    leaky = get_activation("leaky_relu", slope=0.2)
    np.testing.assert_allclose(chi_1(2.0, 0.0, leaky), 2.0 * (1 + 0.04) / 2)


def test_small_variance_limits() -> None:
    # tanh'(x)^2 = sech^4 x = 1 - 2 x^2 + O(x^4): E = 1 - 2q + O(q^2).
    q = np.array([1e-6, 1e-4])
    np.testing.assert_allclose(chi(q, 1.0), 1 - 2 * q, rtol=1e-7)
    # sigmoid'(0) = 1/4, so E[sigmoid'^2] -> 1/16.
    assert chi(1e-12, 1.0, 0.0, "sigmoid") == pytest.approx(1 / 16, rel=1e-10)


@pytest.mark.parametrize(
    ("activation", "sigma_w2", "sigma_b2"),
    [
        ("tanh", 2.0, 0.0),
        ("tanh", 1.5, 0.1),
        ("tanh", 16.0, 0.05),
        ("sigmoid", 1.0, 0.0),
        ("sigmoid", 450.0, 0.3),
    ],
)
def test_fixed_point_is_fixed(activation: str, sigma_w2: float, sigma_b2: float) -> None:
    q_star = fixed_point(sigma_w2, sigma_b2, activation)
    assert q_star > 0
    assert variance_map(q_star, sigma_w2, sigma_b2, activation) == pytest.approx(q_star, rel=1e-12)
    # It is the point the layer-by-layer variances settle on.
    sequence = variance_sequence(200, sigma_w2, sigma_b2, activation)
    assert sequence[-1] == pytest.approx(q_star, rel=1e-9)


def test_fixed_point_special_cases() -> None:
    # tanh without biases: q* = 0 in the ordered phase and at sigma_w^2 = 1.
    np.testing.assert_allclose(fixed_point([0.5, 1.0]), 0.0, atol=1e-12)
    # ReLU: q* = sigma_b^2 / (1 - sigma_w^2 / 2), unbounded past He's variance.
    np.testing.assert_allclose(fixed_point([1.0, 3.0], 0.5, "relu"), [1.0, np.inf])
    assert np.isnan(fixed_point(2.0, 0.0, "relu"))
    with pytest.raises(ValueError, match="variance_sequence"):
        fixed_point(1.0, 0.0, "gelu")


def test_critical_line() -> None:
    q_star = np.array([1e-6, 0.1, 0.5, 2.0])
    w2, b2 = critical_line(q_star)
    assert np.all(np.diff(w2) > 0)
    assert np.all(np.diff(b2) > 0)
    np.testing.assert_allclose(chi_1(w2, b2), 1.0, rtol=1e-7)
    np.testing.assert_allclose(fixed_point(w2, b2), q_star, rtol=1e-9)
    np.testing.assert_allclose(critical_sigma_w2(b2), w2, rtol=1e-9)
    # Near q* = 0, sigma_b^2(q*) is O(q*^3) and drowns in rounding below q* ~ 1e-8.
    assert critical_sigma_w2(0.0) == pytest.approx(1.0, abs=1e-7)
    sigmoid_w2 = critical_sigma_w2(0.0, "sigmoid")
    assert chi_1(sigmoid_w2, 0.0, "sigmoid") == pytest.approx(1.0, rel=1e-7)


def test_depth_scale() -> None:
    np.testing.assert_allclose(depth_scale([math.exp(-0.5), math.exp(0.25)]), [2.0, -4.0])
    assert depth_scale(1.0) == np.inf


def test_predicted_profile() -> None:
    profile = predicted_log10_grad_norms(12, 1.0, 0.0, "relu")
    np.testing.assert_allclose(profile, 0.5 * np.log10(0.5) * np.arange(12, -1, -1), atol=1e-14)
    # tanh: the step through layer l uses chi at that layer's own variance.
    q = variance_sequence(5, 2.0, 0.1)
    steps = 0.5 * np.log10(chi(q, 2.0))
    np.testing.assert_allclose(np.diff(predicted_log10_grad_norms(5, 2.0, 0.1)), -steps)


def test_init_sigma_w2_is_the_fan_in_times_the_variance_of_drawn_weights() -> None:
    # Measured from samples, not from the initialisers' own formulas: 400 x 400 Gaussian weights
    # give the variance to sqrt(2 / 160000) = 0.35% (one standard error); 1% is three of them.
    rng = np.random.default_rng(3)
    for name, init in INITIALIZERS.items():
        scale = 0.05 if init.scale_is_std else 1.5
        drawn = init.sample(rng, 400, 400, weight_scale=scale)
        assert init_sigma_w2(name, 400, weight_scale=scale) == pytest.approx(
            400 * drawn.var(), rel=0.01
        ), name
    assert init_sigma_w2("he_normal", 64) == pytest.approx(2.0)
    assert init_sigma_w2("xavier_uniform", 64) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: chi(-1.0, 1.0), ValueError, "q must be >= 0"),
        (lambda: chi(1.0, 0.0), ValueError, "sigma_w2 must be > 0"),
        (lambda: chi_1(1.0, -0.1), ValueError, "sigma_b2 must be >= 0"),
        (lambda: chi_1(1.0, 0.0, "tanhh"), ValueError, "did you mean 'tanh'"),
        (lambda: chi_1(1.0, 0.0, 3), TypeError, "activation must be"),
        (lambda: chi(np.nan, 1.0), ValueError, "q must be finite"),
        (lambda: gaussian_expectation("tanh", 1.0), TypeError, "function must be callable"),
        (lambda: depth_scale(0.0), ValueError, "chi_value must be > 0"),
        (lambda: variance_sequence(0, 1.0), ValueError, "depth must be an integer >= 1"),
        (lambda: init_sigma_w2("xavier", 10), ValueError, "unknown init"),
        (lambda: critical_sigma_w2(1e9), ValueError, "sigma_b2 too large"),
        (
            lambda: simulate_mean_field(
                2, 4, sigma_w2=1.0, activation="tanh", batch_size=1, loss="mean"
            ),
            ValueError,
            "unknown loss",
        ),
    ],
)
def test_bad_arguments_are_named(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# --- the prediction against the measurement ------------------------------------------------------

WIDTH = 512
DEPTH = 24
TRANSIENT = 8  # layers next to the input, where q_l is still on its way to q*
# Tolerance. At width 512 the squared norm of a layer's gradient is a sum over 512 units, so the
# log of one layer's ratio fluctuates by a few hundredths per network; a slope fitted over the 16
# settled layers has a standard error of 0.002 to 0.012 here (computed from the networks below,
# and required to be under half the tolerance, so that a wrong prediction cannot pass by luck).
# The finite-width bias of a log ratio is of order 1 / width ~ 0.002 per layer. 5% of
# |ln chi_1| is between 0.015 and 0.14 for the off-critical cases here (chi_1 from 0.056 to
# 2.05). A saturated sigmoid passes almost no gradient through most of its units, so fewer units
# carry it and its ratios are noisier: those cases average 8 and 16 networks, as does critical
# tanh, whose slope must be resolved to an absolute 0.02.
# At chi_1 = 1 a relative tolerance is ill-posed (ln chi_1 = 0), so there the fitted slope must
# be within an absolute 0.02 of 0 per layer: 5% of ln 1.5, or less than a factor 1.4 in the
# gradient norm over the 16 fitted layers.
RELATIVE = 0.05
ABSOLUTE = 0.02
TANH_BIAS = 0.05
CONFIGS = [
    # (activation, sigma_w^2, sigma_b^2, phase, networks)
    ("tanh", 0.5, TANH_BIAS, "ordered", 4),
    ("tanh", "critical", TANH_BIAS, "critical", 8),
    ("tanh", 4.0, TANH_BIAS, "chaotic", 4),
    ("relu", 1.0, 0.0, "ordered", 4),
    ("relu", 2.0, 0.0, "critical", 4),
    ("relu", 3.0, 0.0, "chaotic", 4),
    ("sigmoid", 1.0, 0.0, "ordered", 4),
    ("sigmoid", "critical", 0.0, "critical", 16),
    ("sigmoid", 450.0, 0.0, "chaotic", 8),
]


def measured_ln_chi(
    activation: str, sigma_w2: float, sigma_b2: float, trials: int
) -> tuple[float, float]:
    """The fitted per-layer slope of ln ||dLoss/dh_l||^2 (going down), and its standard error."""
    flow = simulate_mean_field(
        DEPTH,
        WIDTH,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        activation=activation,
        batch_size=8,
        trials=trials,
        seed=7,
        dtype="float32",  # ample for a slope; halves the time of drawing the weights
    )
    # ln ||dLoss/dh_l||^2 for l = TRANSIENT..L, per network; going down one layer adds ln chi.
    ln_squares = 2 * np.log(10) * flow.log10_grad_norms[:, TRANSIENT:]
    layers = np.arange(TRANSIENT, DEPTH + 1)
    slopes = -np.polyfit(layers, ln_squares.T, 1)[0]  # one per network
    return float(slopes.mean()), float(slopes.std(ddof=1) / math.sqrt(slopes.size))


@pytest.mark.parametrize(("activation", "sigma_w2", "sigma_b2", "phase", "trials"), CONFIGS)
def test_measured_log_slope_matches_ln_chi_1(
    activation: str, sigma_w2: float | str, sigma_b2: float, phase: str, trials: int
) -> None:
    if sigma_w2 == "critical":
        sigma_w2 = float(critical_sigma_w2(sigma_b2, activation))
    predicted = float(chi_1(sigma_w2, sigma_b2, activation))
    # The phase, with a margin: on the critical line chi_1 is 1 up to the root finder's rounding,
    # on either side of 1.
    near_one = predicted == pytest.approx(1, abs=1e-7)
    assert (near_one, predicted < 1 and not near_one, predicted > 1 and not near_one) == (
        phase == "critical",
        phase == "ordered",
        phase == "chaotic",
    )
    # The fit starts where the theory says the variance has settled: chi(q_l) within 0.2% of
    # chi_1 on every fitted layer (ReLU has no transient at all).
    q = variance_sequence(DEPTH, sigma_w2, sigma_b2, activation)
    settled = chi(q[TRANSIENT:], sigma_w2, sigma_b2, activation)
    np.testing.assert_allclose(settled, predicted, rtol=2e-3)

    measured, standard_error = measured_ln_chi(activation, sigma_w2, sigma_b2, trials)
    expected = math.log(predicted)
    tolerance = ABSOLUTE if phase == "critical" else RELATIVE * abs(expected)
    assert standard_error < tolerance / 2, f"too noisy to test: standard error {standard_error}"
    assert abs(measured - expected) < tolerance, (
        f"{activation} sigma_w^2={sigma_w2:.4g}: measured ln chi {measured:.4f} per layer, "
        f"predicted {expected:.4f}, tolerance {tolerance:.4f}"
    )


def test_the_sum_loss_breaks_the_prediction_for_relu_only() -> None:
    """The theory assumes a zero-mean error signal; the sum loss's upstream of ones is not.

    ReLU's derivative (a step) is not even, so E[W_ij 1{z_j > 0}] != 0: with the same upstream for
    every unit the gradient correlates with the weights and grows faster than chi_1 predicts.
    tanh' is even, and the correlation cancels.
    """
    results = {}
    for activation in ("relu", "tanh"):
        for loss in ("random", "sum"):
            flow = simulate_mean_field(
                16, 256, sigma_w2=2.0, activation=activation, batch_size=8, trials=4, loss=loss
            )
            ln_squares = 2 * np.log(10) * flow.log10_grad_norms
            results[activation, loss] = -np.polyfit(np.arange(17), ln_squares.T, 1)[0].mean()
    # He's variance: chi_1 = 1 exactly, ln chi_1 = 0. Measured: about -0.02 with a random error
    # signal, +0.11 (the norm grows 1.1-fold per layer going down) with the sum loss.
    assert abs(results["relu", "random"]) < 0.04
    assert results["relu", "sum"] > 0.08
    assert abs(results["tanh", "sum"] - results["tanh", "random"]) < 0.02


def test_relu_at_he_keeps_the_mean_square_while_the_typical_gradient_drifts_with_width() -> None:
    """At finite width chi_1 = 1 holds for the mean squared gradient (Hanin 2018), not for its log.

    The log of the norm averages below the log of its mean by a drift that shrinks with the
    width: this is what separates the measured ReLU factor from 1.000 on predicting-decay.md.
    """
    drifts = []
    for width, trials in ((16, 2000), (64, 500)):
        flow = simulate_mean_field(
            20, width, sigma_w2=2.0, activation="relu", batch_size=4, trials=trials, seed=5
        )
        log_ratio = flow.log10_grad_norms[:, 0] - flow.log10_grad_norms[:, -1]
        squares = 10 ** (2 * log_ratio)
        error = squares.std() / math.sqrt(trials)
        assert abs(squares.mean() - 1) < 4 * error, (width, squares.mean(), error)
        drifts.append(log_ratio.mean())
    # Both drift downwards, the wider network by less.
    assert drifts[0] < drifts[1] < 0


# --- the phase diagram and the Jacobian spectrum -------------------------------------------------


def test_phase_diagram_sides_follow_chi_1() -> None:
    w2 = [0.5, 1.5, 4.0]
    grid = phase_diagram(w2, [0.0, 0.3], depth=20, width=64, batch_size=4, trials=2)
    assert grid.log10_ratio.shape == (3, 2)
    assert grid.networks == 12
    # Far from the line the sign of the measured ratio is the phase: chi_1 < 1 vanishes.
    for i, sigma_w2 in enumerate(w2):
        for j, sigma_b2 in enumerate(grid.sigma_b2):
            predicted = predicted_log10_grad_norms(20, sigma_w2, sigma_b2)[0]
            if abs(predicted) > 1:
                assert np.sign(grid.log10_ratio[i, j]) == np.sign(predicted)
                assert grid.log10_ratio[i, j] == pytest.approx(predicted, rel=0.2)


def test_phase_diagram_matches_a_separate_run_of_the_same_networks() -> None:
    # One grid point, one network: the same weights and biases through backprop directly.
    from vangrad import backprop

    grid = phase_diagram([2.0], [0.1], depth=6, width=16, batch_size=3, seed=4)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 16))
    weights = rng.standard_normal((6, 1, 16, 16)) / 4.0 * math.sqrt(2.0)
    biases = math.sqrt(0.1) * rng.standard_normal((6, 1, 1, 16))
    upstream = rng.standard_normal((1, 3, 16))
    flow = backprop(
        x, [w[0] for w in weights], "tanh", biases=[b[0, 0] for b in biases], upstream=upstream[0]
    )
    expected = flow.log10_grad_norms[0] - flow.log10_grad_norms[-1]
    assert grid.log10_ratio[0, 0] == pytest.approx(expected, rel=1e-10)


def test_jacobian_of_orthogonal_linear_network_is_orthogonal() -> None:
    spectra = jacobian_singular_values(
        [3, 9], 20, activation="linear", sigma_w2=1.0, weight_distribution="orthogonal", trials=3
    )
    np.testing.assert_allclose(spectra[9], 1.0, rtol=1e-10)


def test_jacobian_matches_finite_differences() -> None:
    spectra = jacobian_singular_values(
        [2], 5, activation="tanh", sigma_w2=1.5, sigma_b2=0.1, trials=1, seed=3
    )
    # Rebuild the same network and differentiate it numerically.
    rng = np.random.default_rng(3)
    q_star = float(fixed_point(1.5, 0.1))
    x = math.sqrt((q_star - 0.1) / 1.5) * rng.standard_normal((1, 1, 5))
    layers = []
    for _ in range(2):
        w = INITIALIZERS["lecun_normal"].sample(rng, 5, 5, weight_scale=math.sqrt(1.5), trials=1)
        b = math.sqrt(0.1) * rng.standard_normal((1, 1, 5))
        layers.append((w, b))

    def forward(v: np.ndarray) -> np.ndarray:
        for w, b in layers:
            v = np.tanh(v @ w + b)
        return v

    step = 1e-6
    rows = [
        (forward(x + step * np.eye(5)[i]) - forward(x - step * np.eye(5)[i]))[0, 0] / (2 * step)
        for i in range(5)
    ]
    numeric = np.linalg.svd(np.array(rows), compute_uv=False)
    np.testing.assert_allclose(spectra[2][0], numeric, rtol=1e-6)


def test_jacobian_variance_formula() -> None:
    relu = predicted_jacobian_variance([8, 32], "relu", 2.0)
    np.testing.assert_allclose(relu["gaussian"], [16, 64])  # L / p, p = 1/2
    np.testing.assert_allclose(relu["orthogonal"], [8, 32])  # L (1/p - 1)
    linear = predicted_jacobian_variance([10], "linear", 1.0)
    np.testing.assert_allclose(linear["orthogonal"], [0.0])
    # A product of L Gaussian matrices: eigenvalues of J J^T have variance L (Fuss-Catalan).
    spectra = jacobian_singular_values([4], 200, activation="linear", sigma_w2=1.0, trials=4)
    assert np.mean((spectra[4] ** 2).var(axis=1)) == pytest.approx(4.0, rel=0.25)
    with pytest.raises(ValueError, match="chi_1 = 1"):
        predicted_jacobian_variance([8], "relu", 1.0)


def test_at_zero_variance_the_expectation_is_the_value_at_zero_exactly() -> None:
    """Quadrature weights sum to 1 only to rounding; at q = 0 the answer needs none of them, so
    tanh is exactly critical at sigma_w^2 = 1 (chi_1 = 1, an infinite depth scale) on every
    machine, whatever BLAS kernel would have summed the weights."""
    from vangrad.theory import chi_1, depth_scale, gaussian_expectation

    assert gaussian_expectation(np.cos, [0.0, 0.0]).tolist() == [1.0, 1.0]
    assert float(chi_1(1.0, 0.0, "tanh")) == 1.0
    assert float(depth_scale(chi_1(1.0, 0.0, "tanh"))) == np.inf
    mixed = gaussian_expectation(np.cos, [0.0, 0.5, 4.0])
    assert mixed[0] == 1.0
    np.testing.assert_allclose(mixed[1:], np.exp(-np.array([0.5, 4.0]) / 2), rtol=1e-12)
