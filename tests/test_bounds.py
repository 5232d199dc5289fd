"""The analytic bound: the exercise's cases, exactness in log space, and bad input."""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest

from vangrad import SIGMOID_DERIVATIVE_MAX, gradient_bound, log10_gradient_bound


@pytest.mark.parametrize(
    ("num_layers", "expected"),
    [
        (5, [0.0009765625, 0.00390625, 0.015625, 0.0625, 0.25]),
        (3, [0.015625, 0.0625, 0.25]),
        (1, [0.25]),
    ],
)
def test_exercise_cases(num_layers: int, expected: list[float]) -> None:
    result = gradient_bound(num_layers)
    assert result.dtype == np.float64
    assert result.ndim == 1
    # Powers of 0.25 are powers of two: exact in binary floating point.
    assert result.tolist() == expected


def test_sigmoid_derivative_max_is_the_derivative_at_zero() -> None:
    s = 1 / (1 + math.exp(-0.0))
    assert s * (1 - s) == SIGMOID_DERIVATIVE_MAX


def test_entry_i_is_the_power_num_layers_minus_i() -> None:
    result = gradient_bound(7, derivative_max=0.9)
    expected = [0.9 ** (7 - i) for i in range(7)]
    np.testing.assert_allclose(result, expected, rtol=1e-15)


def test_derivative_max_above_one_grows_towards_the_input() -> None:
    result = gradient_bound(4, derivative_max=2.0)
    assert result.tolist() == [16.0, 8.0, 4.0, 2.0]


def test_underflow_thresholds_in_float64() -> None:
    # 0.25**k = 2**(-2k): subnormal below 2**-1022 (k > 511), zero below half of 2**-1074.
    bound = gradient_bound(600)[::-1]  # bound[k - 1] is 0.25**k
    tiny = np.finfo(np.float64).tiny
    assert bound[511 - 1] >= tiny
    assert 0 < bound[512 - 1] < tiny
    assert bound[537 - 1] > 0
    assert bound[538 - 1] == 0.0


def test_plain_and_log_bounds_agree_where_both_are_representable() -> None:
    num_layers = 500
    for derivative_max in (0.25, 0.5, 0.9, 1.0, 1.5):
        plain = gradient_bound(num_layers, derivative_max)
        logged = log10_gradient_bound(num_layers, derivative_max)
        finite = plain > 0
        np.testing.assert_allclose(np.log10(plain[finite]), logged[finite], rtol=1e-12, atol=0)


def test_log_bound_is_exact_at_a_million_layers() -> None:
    num_layers = 1_000_000
    result = log10_gradient_bound(num_layers)
    assert result.shape == (num_layers,)
    assert np.all(np.isfinite(result))
    # The plain power has long since underflowed; the logarithm has not.
    assert gradient_bound(num_layers)[0] == 0.0
    decimal.getcontext().prec = 40
    exact_first = float(num_layers * decimal.Decimal("0.25").log10())
    assert result[0] == pytest.approx(exact_first, rel=1e-15)
    exact_last = float(decimal.Decimal("0.25").log10())
    assert result[-1] == pytest.approx(exact_last, rel=1e-15)
    # Input layer first: strictly increasing towards the output.
    assert np.all(np.diff(result) > 0)


@pytest.mark.parametrize("function", [gradient_bound, log10_gradient_bound])
@pytest.mark.parametrize(
    ("num_layers", "error", "message"),
    [
        (0, ValueError, r"num_layers must be an integer >= 1, got 0"),
        (-3, ValueError, r"num_layers must be an integer >= 1, got -3"),
        (2.5, TypeError, r"num_layers must be an integer >= 1, got 2\.5 \(type float\)"),
        (5.0, TypeError, r"num_layers must be an integer"),
        ("5", TypeError, r"num_layers must be an integer >= 1, got '5' \(type str\)"),
        (True, TypeError, r"num_layers must be an integer >= 1, got True \(type bool\)"),
        (None, TypeError, r"num_layers must be an integer >= 1, got None"),
        (np.bool_(True), TypeError, r"num_layers must be an integer"),
    ],
)
def test_bad_num_layers(function, num_layers, error, message) -> None:
    with pytest.raises(error, match=message):
        function(num_layers)


@pytest.mark.parametrize("function", [gradient_bound, log10_gradient_bound])
@pytest.mark.parametrize(
    ("derivative_max", "error"),
    [
        (0, ValueError),
        (-0.25, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (math.nan, ValueError),
        ("0.25", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_derivative_max(function, derivative_max, error) -> None:
    with pytest.raises(error, match=r"derivative_max must be a finite number > 0"):
        function(3, derivative_max)


def test_numpy_integers_are_accepted() -> None:
    assert gradient_bound(np.int64(2)).tolist() == [0.0625, 0.25]
    assert log10_gradient_bound(np.uint8(1)).tolist() == [math.log10(0.25)]
