"""Central finite differences, the check every analytic gradient in the tests is held to."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 1e-6
# A central difference in float64 with EPS = 1e-6 is good to about 1e-9 on the small,
# well-conditioned cases of the tests; a wrong term in a backward pass is off by order 1.
RTOL = 1e-6


def numerical_gradient(function: Callable[[np.ndarray], float], point: np.ndarray) -> np.ndarray:
    """Central differences of a scalar function of an array, entry by entry."""
    gradient = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        up, down = point.copy(), point.copy()
        up[index] += EPS
        down[index] -= EPS
        gradient[index] = (function(up) - function(down)) / (2 * EPS)
    return gradient


def assert_close(analytic: np.ndarray, numeric: np.ndarray) -> None:
    """The relative error, over the whole array, below `RTOL`."""
    error = np.linalg.norm(analytic - numeric) / np.linalg.norm(numeric)
    assert error < RTOL, f"relative error {error:.2e}"
