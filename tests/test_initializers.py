"""The initialiser registry: variances, orthogonality, Haar measure, stacking and seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vangrad import INITIALIZERS, get_initializer

FAN_IN, FAN_OUT, TRIALS = 64, 32, 200
N = FAN_IN * FAN_OUT * TRIALS
FORMULAS = {
    "xavier_normal": 2 / (FAN_IN + FAN_OUT),
    "xavier_uniform": 2 / (FAN_IN + FAN_OUT),
    "he_normal": 2 / FAN_IN,
    "he_uniform": 2 / FAN_IN,
    "lecun_normal": 1 / FAN_IN,
    "orthogonal": 1 / max(FAN_IN, FAN_OUT),
    "legacy_uniform": 1 / (3 * FAN_IN),
}


def test_registry_holds_the_documented_initialisers() -> None:
    assert set(INITIALIZERS) == {"normal", *FORMULAS}
    for name, init in INITIALIZERS.items():
        assert init.name == name


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_variance_method_knows_the_formula(name: str) -> None:
    init = INITIALIZERS[name]
    assert init.variance(FAN_IN, FAN_OUT) == pytest.approx(FORMULAS[name], rel=1e-15)
    assert init.variance(FAN_IN, FAN_OUT, weight_scale=3.0) == pytest.approx(9 * FORMULAS[name])
    assert INITIALIZERS["normal"].variance(FAN_IN, FAN_OUT, weight_scale=0.5) == 0.25


@pytest.mark.parametrize("gain", [1.0, 2.5])
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_empirical_variance_matches_the_formula(name: str, gain: float) -> None:
    init = INITIALIZERS[name]
    rng = np.random.default_rng(1)
    weights = init.sample(rng, FAN_IN, FAN_OUT, weight_scale=gain, trials=TRIALS)
    assert weights.shape == (TRIALS, FAN_IN, FAN_OUT)
    variance = gain**2 * FORMULAS[name]
    mean_square = float(np.mean(weights**2))  # the mean is 0, so this estimates the variance
    if init.distribution == "orthogonal":
        # Orthonormal columns: the squares sum to exactly FAN_OUT per matrix.
        assert mean_square == pytest.approx(variance, rel=1e-12)
    else:
        # Standard error of a mean of squares: sqrt((kurtosis - 1) / N) * variance, with
        # kurtosis 3 for a normal and 9/5 for a uniform distribution. Allow 5 of them.
        kurtosis = 3.0 if init.distribution == "normal" else 1.8
        standard_error = math.sqrt((kurtosis - 1) / N) * variance
        assert abs(mean_square - variance) < 5 * standard_error
    assert abs(float(weights.mean())) < 5 * math.sqrt(variance / N)


def test_normal_uses_the_weight_scale_as_standard_deviation() -> None:
    weights = INITIALIZERS["normal"].sample(
        np.random.default_rng(2), FAN_IN, FAN_OUT, weight_scale=1.5, trials=TRIALS
    )
    assert float(weights.std()) == pytest.approx(1.5, rel=5 * math.sqrt(0.5 / N))


def test_uniform_initialisers_stay_inside_their_interval() -> None:
    rng = np.random.default_rng(3)
    weights = INITIALIZERS["he_uniform"].sample(rng, 50, 10, trials=100)
    limit = math.sqrt(6 / 50)
    assert float(np.abs(weights).max()) <= limit
    assert float(np.abs(weights).max()) > 0.99 * limit


@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (5, 5), (1, 4), (4, 1)])
@pytest.mark.parametrize("trials", [None, 7])
def test_orthogonal_has_orthonormal_columns_or_rows(
    shape: tuple[int, int], trials: int | None
) -> None:
    rows, cols = shape
    gain = 1.7
    w = INITIALIZERS["orthogonal"].sample(
        np.random.default_rng(4), rows, cols, weight_scale=gain, trials=trials
    )
    assert w.shape == (*(() if trials is None else (trials,)), rows, cols)
    wt = np.swapaxes(w, -1, -2)
    gram = wt @ w if rows >= cols else w @ wt
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)) + 0 * gram, atol=1e-12)


def test_orthogonal_is_haar_distributed() -> None:
    # Without the sign correction, LAPACK's convention makes Q[0, 0] negative every time; under
    # the Haar measure each entry has mean 0 (and variance 1/n).
    n, trials = 4, 20_000
    w = INITIALIZERS["orthogonal"].sample(np.random.default_rng(5), n, n, trials=trials)
    corner = w[:, 0, 0]
    standard_error = math.sqrt(1 / n / trials)
    assert abs(float(corner.mean())) < 5 * standard_error
    assert float(np.mean(corner > 0)) == pytest.approx(0.5, abs=5 * math.sqrt(0.25 / trials))
    diagonal = np.diagonal(w, axis1=-2, axis2=-1)
    assert abs(float(diagonal.mean())) < 5 * math.sqrt(1 / n / (n * trials))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_draws_are_reproducible_from_a_seed(name: str) -> None:
    init = INITIALIZERS[name]

    def draw(seed: int) -> np.ndarray:
        return init.sample(np.random.default_rng(seed), 5, 3, weight_scale=0.7, trials=4)

    np.testing.assert_array_equal(draw(11), draw(11))
    assert not np.array_equal(draw(11), draw(12))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_float32_draws(name: str) -> None:
    w = INITIALIZERS[name].sample(
        np.random.default_rng(0), 8, 8, weight_scale=1.0, trials=3, dtype="float32"
    )
    assert w.dtype == np.float32
    assert w.shape == (3, 8, 8)
    assert w.flags.c_contiguous


def test_get_initializer() -> None:
    init = get_initializer("he_normal")
    assert init is INITIALIZERS["he_normal"]
    assert get_initializer(init) is init


def test_bad_arguments_are_refused_with_clear_messages() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"unknown init 'xavier'.*did you mean 'xavier_normal'"):
        get_initializer("xavier")
    with pytest.raises(ValueError, match=r"expected one of \['he_normal', 'he_uniform'"):
        get_initializer("glorot")
    with pytest.raises(TypeError, match="init must be a string"):
        get_initializer(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"weight_scale is required for init='normal'"):
        INITIALIZERS["normal"].sample(rng, 3, 3)
    with pytest.raises(ValueError, match=r"weight_scale must be a finite number > 0, got -1"):
        INITIALIZERS["he_normal"].sample(rng, 3, 3, weight_scale=-1)
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
        INITIALIZERS["he_normal"].sample(42, 3, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fan_in must be an integer >= 1, got 0"):
        INITIALIZERS["he_normal"].sample(rng, 0, 3)
    with pytest.raises(TypeError, match=r"fan_out must be an integer >= 1, got True"):
        INITIALIZERS["he_normal"].sample(rng, 3, True)
    with pytest.raises(ValueError, match=r"trials must be an integer >= 1, got 0"):
        INITIALIZERS["he_normal"].sample(rng, 3, 3, trials=0)
    with pytest.raises(ValueError, match=r"unknown dtype 'int64'.*\['float32', 'float64'\]"):
        INITIALIZERS["he_normal"].sample(rng, 3, 3, dtype="int64")
