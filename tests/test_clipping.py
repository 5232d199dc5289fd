"""clip_by_norm and clip_by_value: clipping a list of gradients by global norm or by entry."""

from __future__ import annotations

import numpy as np
import pytest

from vangrad import clip_by_norm, clip_by_value


def test_small_gradients_are_returned_unchanged() -> None:
    grads = [np.array([0.3, 0.4]), np.array([[0.0]])]
    clipped, norm = clip_by_norm(grads, max_norm=1.0)
    assert norm == pytest.approx(0.5)
    assert all(c is g for c, g in zip(clipped, grads, strict=True))


def test_large_gradients_are_scaled_to_max_norm_keeping_direction() -> None:
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 4)), rng.normal(size=5), np.array(2.0)]
    total = np.sqrt(sum(np.sum(g**2) for g in grads))
    clipped, norm = clip_by_norm(grads, max_norm=0.5)
    assert norm == pytest.approx(total, rel=1e-14)
    assert np.sqrt(sum(np.sum(c**2) for c in clipped)) == pytest.approx(0.5, rel=1e-14)
    for c, g in zip(clipped, grads, strict=True):
        assert c.shape == g.shape
        np.testing.assert_allclose(c, g * (0.5 / total), rtol=1e-14)


def test_norm_at_exactly_max_norm_is_not_clipped() -> None:
    grads = [np.array([3.0, 4.0])]
    clipped, norm = clip_by_norm(grads, max_norm=5.0)
    assert norm == 5.0
    assert clipped[0] is grads[0]


def test_exploded_gradients_do_not_overflow_the_norm() -> None:
    grads = [np.full(10, 1e200), np.array([-1e200])]
    clipped, norm = clip_by_norm(grads, max_norm=1.0)
    assert norm == pytest.approx(np.sqrt(11) * 1e200, rel=1e-14)
    assert np.sqrt(sum(np.sum(c**2) for c in clipped)) == pytest.approx(1.0, rel=1e-14)


def test_float32_stays_float32_and_empty_list_has_norm_zero() -> None:
    clipped, _ = clip_by_norm([np.ones(4, dtype=np.float32) * 10], max_norm=1.0)
    assert clipped[0].dtype == np.float32
    assert clip_by_norm([], max_norm=1.0) == ([], 0.0)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="grads must be a list of arrays, got ndarray"):
        clip_by_norm(np.ones(3), max_norm=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_norm must be a finite number > 0, got 0"):
        clip_by_norm([np.ones(3)], max_norm=0)
    with pytest.raises(ValueError, match=r"grads\[1\] must be finite"):
        clip_by_norm([np.ones(3), np.array([np.inf])], max_norm=1.0)
    with pytest.raises(TypeError, match=r"grads\[0\] must be a numeric array"):
        clip_by_norm([np.array(["a"])], max_norm=1.0)


def test_clipping_survives_a_global_norm_that_overflows() -> None:
    # The norm of four entries of 1e308 is 2e308: inf in float64. The clipped gradient is not.
    clipped, norm = clip_by_norm([np.full(4, 1e308)], 1.0)
    assert norm == np.inf
    np.testing.assert_allclose(clipped[0], [0.5] * 4, rtol=1e-12)


def test_clip_by_value_caps_each_entry_and_keeps_the_rest() -> None:
    grads = [np.array([3.0, -0.5, -7.0]), np.array([[0.25]])]
    clipped, largest = clip_by_value(grads, max_value=1.0)
    assert largest == 7.0
    assert clipped[0].tolist() == [1.0, -0.5, -1.0]
    assert clipped[1] is grads[1]  # nothing beyond the threshold: the same array


def test_clip_by_value_turns_the_direction_clip_by_norm_keeps() -> None:
    # One large entry and one small: by value the small one gains weight, by norm it does not.
    grads = [np.array([100.0, 1.0])]
    by_value, _ = clip_by_value(grads, max_value=1.0)
    by_norm, _ = clip_by_norm(grads, max_norm=1.0)
    cosine = by_value[0] @ grads[0] / (np.linalg.norm(by_value[0]) * np.linalg.norm(grads[0]))
    assert cosine == pytest.approx(101 / (np.sqrt(2) * np.sqrt(10001)), rel=1e-14)
    np.testing.assert_allclose(by_norm[0], grads[0] / np.sqrt(10001), rtol=1e-14)


def test_clip_by_value_at_exactly_the_threshold_and_dtypes() -> None:
    grads = [np.array([-2.0, 2.0])]
    clipped, largest = clip_by_value(grads, max_value=2.0)
    assert largest == 2.0
    assert clipped[0] is grads[0]
    clipped, _ = clip_by_value([np.full(3, 5.0, dtype=np.float32)], max_value=1.0)
    assert clipped[0].dtype == np.float32
    assert clipped[0].tolist() == [1.0, 1.0, 1.0]
    assert clip_by_value([], max_value=1.0) == ([], 0.0)
    clipped, largest = clip_by_value([np.zeros((0, 3))], max_value=1.0)
    assert largest == 0.0
    assert clipped[0].shape == (0, 3)


def test_clip_by_value_bad_arguments() -> None:
    with pytest.raises(TypeError, match="grads must be a list of arrays, got ndarray"):
        clip_by_value(np.ones(3), max_value=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_value must be a finite number > 0, got -1"):
        clip_by_value([np.ones(3)], max_value=-1)
    with pytest.raises(TypeError, match=r"max_value must be a finite number > 0, got True"):
        clip_by_value([np.ones(3)], max_value=True)
    with pytest.raises(ValueError, match=r"grads\[0\] must be finite"):
        clip_by_value([np.array([np.nan])], max_value=1.0)
    with pytest.raises(TypeError, match=r"grads\[0\] must be a numeric array"):
        clip_by_value([np.array(["a"])], max_value=1.0)
