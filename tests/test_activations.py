"""The activation registry: values, derivatives, maxima, stability and lookup."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

from vangrad import ACTIVATIONS, Activation, get_activation

NAMES = sorted(ACTIVATIONS)
# Every family, plus the parameterised ones away from their defaults.
VARIANTS = [
    *[(name, {}) for name in NAMES],
    ("leaky_relu", {"slope": 0.2}),
    ("elu", {"alpha": 2.0}),
]
VARIANT_IDS = [f"{name}{params or ''}" for name, params in VARIANTS]
LARGE = np.array([20.0, 50.0, 100.0, 300.0, 700.0, 750.0, 1e3, 1e4])
# Points for finite differences: a dense grid that avoids the kink at 0, plus large |z|.
POINTS = np.concatenate([np.linspace(-8.0, 8.0, 800), LARGE, -LARGE])
HUGE = np.array([-1e308, -1e100, -1e4, -745.0, -1e-300, 0.0, 1e-300, 745.0, 1e4, 1e100, 1e308])


def test_registry_holds_the_documented_activations() -> None:
    assert set(NAMES) == {
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "gelu",
        "softplus",
        "linear",
    }
    for name, act in ACTIVATIONS.items():
        assert act.name == name
        assert act.description
    assert "tanh approximation" in ACTIVATIONS["gelu"].description
    assert {n for n, a in ACTIVATIONS.items() if a.squashing} == {"sigmoid", "tanh"}


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=VARIANT_IDS)
def test_derivative_matches_central_differences(name: str, params: dict[str, float]) -> None:
    act = get_activation(name, **params)
    step = 1e-7 * np.maximum(1.0, np.abs(POINTS))
    numerical = (act.function(POINTS + step) - act.function(POINTS - step)) / (2 * step)
    # Relative to the function's own rounding: where tanh or sigmoid has saturated to +-1, the
    # difference quotient cannot see a derivative of 1e-200.
    np.testing.assert_allclose(act.derivative(POINTS), numerical, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=VARIANT_IDS)
def test_derivative_max_matches_a_dense_grid(name: str, params: dict[str, float]) -> None:
    act = get_activation(name, **params)
    grid = np.concatenate([np.linspace(-20.0, 20.0, 400_001), [-1e-12, 1e-12], LARGE, -LARGE])
    grid_max = float(np.max(act.derivative(grid)))
    assert grid_max <= act.derivative_max * (1 + 1e-12)
    # Reached, or approached (softplus at +inf, elu with alpha > 1 just left of 0).
    assert grid_max == pytest.approx(act.derivative_max, rel=1e-9)


def test_known_derivative_maxima() -> None:
    assert ACTIVATIONS["sigmoid"].derivative_max == 0.25
    assert ACTIVATIONS["tanh"].derivative_max == 1.0
    assert ACTIVATIONS["relu"].derivative_max == 1.0
    assert ACTIVATIONS["softplus"].derivative_max == 1.0
    # Computed at import; the tanh-approximate GELU peaks at about 1.129 near z = 1.5.
    assert ACTIVATIONS["gelu"].derivative_max == pytest.approx(1.12899, abs=1e-5)
    assert get_activation("leaky_relu", slope=3.0).derivative_max == 3.0


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=VARIANT_IDS)
def test_huge_inputs_give_finite_results_without_warnings(
    name: str, params: dict[str, float]
) -> None:
    act = get_activation(name, **params)
    # Warnings are errors in this suite; errstate turns silent flags into errors as well.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, slope = act.value_and_derivative(HUGE)
        assert np.all(np.isfinite(act.function(HUGE)))
        assert np.all(np.isfinite(act.derivative(HUGE)))
    assert np.all(np.isfinite(value))
    assert np.all(np.isfinite(slope))


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=VARIANT_IDS)
def test_value_and_derivative_agree_with_the_separate_functions(
    name: str, params: dict[str, float]
) -> None:
    act = get_activation(name, **params)
    value, slope = act.value_and_derivative(POINTS)
    np.testing.assert_array_equal(value, act.function(POINTS))
    np.testing.assert_array_equal(slope, act.derivative(POINTS))


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32_and_input_is_not_modified(name: str) -> None:
    act = ACTIVATIONS[name]
    z = np.linspace(-5, 5, 11, dtype=np.float32)
    before = z.copy()
    value, slope = act.value_and_derivative(z)
    assert act.function(z).dtype == np.float32
    assert act.derivative(z).dtype == np.float32
    assert value.dtype == slope.dtype == np.float32
    np.testing.assert_array_equal(z, before)


def _sigmoid_exact(z: float) -> float:
    with localcontext() as context:
        context.prec = 60
        return float(1 / (1 + (-Decimal(z)).exp()))


def test_sigmoid_is_exact_up_to_1e4() -> None:
    z = np.concatenate([np.linspace(-1e4, 1e4, 2001), [-745.0, -740.0, -709.0, -36.0, 36.0]])
    expected = np.array([_sigmoid_exact(v) for v in z.tolist()])
    # Within a few units in the last place, and at most one subnormal step near underflow.
    actual = ACTIVATIONS["sigmoid"].function(z)
    np.testing.assert_allclose(actual, expected, rtol=1e-15, atol=1e-323)


def test_sigmoid_and_tanh_derivatives_are_accurate_in_the_tails() -> None:
    # Where 1 - t**2 would cancel to 0, the derivatives keep their relative accuracy.
    z = np.array([-350.0, -100.0, -30.0, -5.0, 5.0, 30.0, 100.0, 350.0])
    tanh_expected = [1 / math.cosh(v) ** 2 for v in z.tolist()]
    np.testing.assert_allclose(ACTIVATIONS["tanh"].derivative(z), tanh_expected, rtol=1e-13)
    sigmoid_expected = [math.exp(-abs(v)) / (1 + math.exp(-abs(v))) ** 2 for v in z.tolist()]
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"].derivative(z), sigmoid_expected, rtol=1e-13)


def test_relu_derivative_is_zero_at_zero_and_for_inactive_units() -> None:
    slope = ACTIVATIONS["relu"].derivative(np.array([-1.0, 0.0, 1e-300, 2.0]))
    assert slope.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_get_activation_by_name_with_parameters() -> None:
    leaky = get_activation("leaky_relu", slope=0.2)
    assert leaky.params == {"slope": 0.2}
    assert leaky.function(np.array([-2.0, 3.0])).tolist() == [-0.4, 3.0]
    assert get_activation("leaky_relu").params == {"slope": 0.01}
    assert get_activation("elu", alpha=2.0).function(np.array([-np.inf + 0.0])).tolist() == [-2.0]


def test_get_activation_passes_an_activation_through() -> None:
    custom = Activation(
        name="softsign",
        description="z / (1 + |z|)",
        function=lambda z: z / (1 + np.abs(z)),
        derivative=lambda z: 1 / (1 + np.abs(z)) ** 2,
        derivative_max=1.0,
        squashing=True,
    )
    assert get_activation(custom) is custom
    value, slope = custom.value_and_derivative(np.array([1.0]))
    assert (value.tolist(), slope.tolist()) == ([0.5], [0.25])
    rebuilt = get_activation(ACTIVATIONS["leaky_relu"], slope=0.5)
    assert rebuilt.params == {"slope": 0.5}


def test_get_activation_refuses_unknown_names_and_parameters() -> None:
    with pytest.raises(ValueError, match=r"unknown activation 'rellu'.*did you mean 'relu'"):
        get_activation("rellu")
    with pytest.raises(ValueError, match=r"expected one of \['elu', 'gelu', 'leaky_relu'"):
        get_activation("swish")
    with pytest.raises(TypeError, match=r"activation must be a string"):
        get_activation(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'leaky_relu' got unexpected parameters \['alpha'\].*"):
        get_activation("leaky_relu", alpha=1.0)
    with pytest.raises(TypeError, match=r"'tanh' got unexpected parameters.*accepts: none"):
        get_activation("tanh", slope=1.0)
    with pytest.raises(ValueError, match=r"slope must be a finite number > 0, got -0.1"):
        get_activation("leaky_relu", slope=-0.1)
    with pytest.raises(TypeError, match=r"alpha must be a finite number > 0"):
        get_activation("elu", alpha="1")


def _tanh_exact(z: float) -> float:
    with localcontext() as context:
        context.prec = 80
        e = (2 * Decimal(z)).exp()
        return float((e - 1) / (e + 1))


def _tanh_slope_exact(z: float) -> float:
    with localcontext() as context:
        context.prec = 80
        e = (2 * Decimal(z)).exp()
        return float(4 * e / (e + 1) ** 2)  # 1 - tanh(z)^2


def test_tanh_and_its_slope_are_accurate_on_both_sides_of_the_seam() -> None:
    # The slope is 1 - t^2 up to |z| = 2 and 4e / (1 + e)^2 with e = exp(-2|z|) beyond, where
    # 1 - t^2 would cancel (to 0 for |z| > 19): both must be accurate near the seam and far out.
    rng = np.random.default_rng(0)
    z = np.concatenate(
        [
            rng.standard_normal(3000) * np.exp(rng.uniform(-25, 3.5, 3000)),
            [1.9999999, 2.0, 2.0000001, -2.0, 1e-8, -1e-12, 20.0, -30.0, 300.0],
        ]
    )
    tanh = ACTIVATIONS["tanh"]
    value, slope = tanh.value_and_derivative(z)
    np.testing.assert_allclose(value, [_tanh_exact(v) for v in z.tolist()], rtol=2e-15, atol=0)
    np.testing.assert_allclose(slope, [_tanh_slope_exact(v) for v in z.tolist()], rtol=1e-14)
    assert slope[-1] > 0  # exp(-600): no cancellation to 0
    assert np.signbit(tanh.function(np.array([-0.0])))[0]


@pytest.mark.parametrize("name", NAMES)
def test_numpy_scalars_and_integer_arrays_are_accepted(name: str) -> None:
    act = ACTIVATIONS[name]
    for z in (np.float64(0.3), np.float64(2.5), np.array(-3.0), np.array([1, 5, -2])):
        array = np.asarray(z, dtype=np.float64)
        np.testing.assert_allclose(act.function(z), act.function(array), rtol=1e-15)
        np.testing.assert_allclose(act.derivative(z), act.derivative(array), rtol=1e-15)
        value, slope = act.value_and_derivative(z)
        np.testing.assert_allclose(value, act.function(array), rtol=1e-15)
        np.testing.assert_allclose(slope, act.derivative(array), rtol=1e-15)
