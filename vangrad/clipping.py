"""Gradient clipping, the usual remedy for exploding gradients in training.

Pascanu, Mikolov and Bengio (2013, "On the difficulty of training recurrent neural networks")
proposed rescaling the gradient whenever its norm passes a threshold, for recurrent networks
whose gradients explode; clipping by the global norm of all the weight gradients together is
that rule applied to the whole parameter vector. Clipping by value, the older rule (Mikolov
limited gradients to a range entry by entry in his 2012 thesis), caps every entry separately
and so also turns the update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from vangrad._validation import check_finite_array, check_positive_float

__all__ = ["clip_by_norm", "clip_by_value"]


def _scaled_norm(array: np.ndarray, largest: float) -> float:
    """The Frobenius norm of `array / largest`: at most sqrt(size), so it cannot overflow."""
    scaled = array / largest
    return math.sqrt(float(np.vdot(scaled, scaled)))


def clip_by_norm(grads: Sequence[ArrayLike], max_norm: float) -> tuple[list[np.ndarray], float]:
    r"""Scale a list of gradients so that their global norm is at most `max_norm`.

    The global norm is the Frobenius norm of all the arrays together,
    $\lVert g \rVert = \sqrt{\sum_i \lVert g_i \rVert^2}$. If it exceeds `max_norm` $= c$, every
    array is multiplied by $c / \lVert g \rVert$, which keeps the direction of the update
    (Pascanu et al. 2013); otherwise the arrays are returned unchanged (the same arrays).

    Args:
        grads: The gradients, arrays of any shape; finite.
        max_norm: The largest allowed global norm; a finite number > 0.

    Returns:
        The clipped list (same shapes and dtypes) and the global norm before clipping.

    Raises:
        TypeError: If `grads` is not a list of numeric arrays or `max_norm` is not a number.
        ValueError: If a gradient is not finite or `max_norm` is not finite and > 0.

    Example:
        ```py
        import numpy as np

        from vangrad import clip_by_norm

        clipped, norm = clip_by_norm([np.array([3.0, 0.0]), np.array([[4.0]])], max_norm=1.0)
        print(norm, clipped[0].round(6).tolist(), clipped[1].round(6).tolist())
        #> 5.0 [0.6, 0.0] [[0.8]]
        ```
    """
    if not isinstance(grads, list | tuple):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    max_norm = check_positive_float("max_norm", max_norm)
    arrays = [check_finite_array(f"grads[{i}]", g, ndim=range(33)) for i, g in enumerate(grads)]
    # Every array is divided by the same largest entry, so the clipping factor stays finite
    # even where the global norm itself overflows to inf (gradients near 1e308).
    largest = max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0)
    if largest == 0.0:
        return arrays, 0.0
    scaled_norm = math.hypot(*(_scaled_norm(a, largest) for a in arrays))
    norm = largest * scaled_norm
    if norm <= max_norm:
        return arrays, norm
    factor = (max_norm / largest) / scaled_norm
    return [a * factor for a in arrays], norm


def clip_by_value(grads: Sequence[ArrayLike], max_value: float) -> tuple[list[np.ndarray], float]:
    r"""Clip every entry of a list of gradients to the interval `[-max_value, max_value]`.

    Each entry is capped on its own, so the update is not only shortened but turned: entries
    that were large shrink to `max_value` while small ones keep their size. Compare
    [`clip_by_norm`][vangrad.clip_by_norm], which keeps the direction. An array with no entry
    beyond `max_value` is returned unchanged (the same array).

    Args:
        grads: The gradients, arrays of any shape; finite.
        max_value: The largest allowed absolute value of an entry; a finite number > 0.

    Returns:
        The clipped list (same shapes and dtypes) and the largest absolute entry before
        clipping.

    Raises:
        TypeError: If `grads` is not a list of numeric arrays or `max_value` is not a number.
        ValueError: If a gradient is not finite or `max_value` is not finite and > 0.

    Example:
        ```py
        import numpy as np

        from vangrad import clip_by_value

        clipped, largest = clip_by_value([np.array([3.0, 0.5]), np.array([[-4.0]])], max_value=1.0)
        print(largest, clipped[0].tolist(), clipped[1].tolist())
        #> 4.0 [1.0, 0.5] [[-1.0]]
        ```
    """
    if not isinstance(grads, list | tuple):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    max_value = check_positive_float("max_value", max_value)
    arrays = [check_finite_array(f"grads[{i}]", g, ndim=range(33)) for i, g in enumerate(grads)]
    peaks = [float(np.max(np.abs(a), initial=0.0)) for a in arrays]
    clipped = [
        a if peak <= max_value else np.clip(a, -max_value, max_value).astype(a.dtype, copy=False)
        for a, peak in zip(arrays, peaks, strict=True)
    ]
    return clipped, max(peaks, default=0.0)
