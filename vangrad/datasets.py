"""Synthetic data sets, generated from a seed with numpy: nothing is downloaded.

The training experiment needs a problem that a shallow or linear model cannot solve: two
interleaved spirals. No straight line separates them, and the boundary a network must draw winds
around the origin, so the network has to bend its input space many times, which is what depth
buys.
"""

from __future__ import annotations

import numpy as np

from vangrad._validation import (
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_seed,
)

__all__ = ["spirals"]


def spirals(
    n_per_class: int,
    *,
    classes: int = 2,
    turns: float = 1.25,
    noise: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `classes` interleaved spiral arms in the plane, one class per arm.

    Arm `c` is the curve `r (cos(2 pi turns r + 2 pi c / classes), sin(...))` for radius `r` in
    (0, 1]; each point takes a random radius (uniform in area along the arm, so the outer turns,
    which are longer, get more points) and Gaussian noise of standard deviation `noise` on both
    coordinates. The points are shuffled.

    Args:
        n_per_class: Points per arm; an integer >= 1.
        classes: The number of arms (and classes); an integer >= 2.
        turns: How many times each arm winds around the origin; a number > 0.
        noise: The standard deviation of the noise; a number >= 0.
        seed: An integer >= 0, or a `numpy.random.Generator` to draw from.

    Returns:
        `(x, y)`: the points, shape `(classes * n_per_class, 2)`, within about `[-1, 1]^2`, and
        their integer labels `0..classes - 1`, shape `(classes * n_per_class,)`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a count or `turns` is out of range, or `noise` is negative.

    Example:
        ```py
        import numpy as np

        from vangrad.datasets import spirals

        x, y = spirals(100, seed=0)
        print(x.shape, np.bincount(y).tolist())
        #> (200, 2) [100, 100]
        print(round(float(np.abs(x).max()), 2))
        #> 1.04
        ```
    """
    n_per_class = check_positive_int("n_per_class", n_per_class)
    classes = check_positive_int("classes", classes, minimum=2)
    turns = check_positive_float("turns", turns)
    noise = check_nonnegative_float("noise", noise)
    rng = check_seed(seed)

    labels = np.repeat(np.arange(classes), n_per_class)
    # sqrt of a uniform draw: the density of points per unit length of arc stays roughly even.
    radius = np.sqrt(rng.uniform(0.0, 1.0, size=labels.size))
    angle = 2 * np.pi * (turns * radius + labels / classes)
    points = radius[:, np.newaxis] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    points += rng.normal(0.0, noise, size=points.shape)
    order = rng.permutation(labels.size)
    return points[order], labels[order]
