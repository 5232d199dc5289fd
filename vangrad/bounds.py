"""The analytic picture: how small the gradient can be after k squashing layers.

Backpropagation multiplies one local derivative per layer. The logistic sigmoid's derivative
never exceeds 1/4, so in a chain of scalar units whose weights have magnitude at most one, the
gradient that reaches a unit k layers below the output is at most $0.25^k$ of the gradient at
the output. These functions return that bound for every layer of a stack.
"""

from __future__ import annotations

import math

import numpy as np

from vangrad._validation import check_positive_float, check_positive_int

__all__ = ["SIGMOID_DERIVATIVE_MAX", "gradient_bound", "log10_gradient_bound"]

SIGMOID_DERIVATIVE_MAX = 0.25
"""The largest value of the sigmoid's derivative, reached at 0: `sigmoid(0) * (1 - sigmoid(0))`."""


def _layers_below_output(num_layers: object) -> np.ndarray:
    depth = check_positive_int("num_layers", num_layers)
    # Entry i (input side first) sits num_layers - i derivatives away from the output.
    return np.arange(depth, 0, -1)


def gradient_bound(num_layers: int, derivative_max: float = SIGMOID_DERIVATIVE_MAX) -> np.ndarray:
    """Return the gradient-magnitude bound at each layer, from the input layer to the output layer.

    Entry `i` is `derivative_max ** (num_layers - i)`: the input layer sits behind all
    `num_layers` derivatives, the output layer behind one. The bound holds for a chain of
    scalar units whose weights have magnitude at most one; in a layer of many units the weights
    enter through the matrix (see the deep sigmoid networks page).

    The powers are ordinary floats, so they underflow: in float64, $0.25^k$ becomes
    subnormal from k = 512 and exactly 0.0 from k = 538. For deeper stacks use
    [`log10_gradient_bound`][vangrad.log10_gradient_bound], which stays exact.

    Args:
        num_layers: How many layers the gradient passes through; an integer >= 1.
        derivative_max: The largest local derivative of one layer; a finite number > 0.
            The default, 0.25, is the sigmoid's.

    Returns:
        A float64 array of length `num_layers`.

    Raises:
        TypeError: If `num_layers` is not an integer or `derivative_max` is not a number.
        ValueError: If `num_layers` < 1 or `derivative_max` is not finite and positive.

    Example:
        ```py
        from vangrad import gradient_bound

        print(gradient_bound(5).tolist())
        #> [0.0009765625, 0.00390625, 0.015625, 0.0625, 0.25]
        print(gradient_bound(3, derivative_max=1.0).tolist())
        #> [1.0, 1.0, 1.0]
        ```
    """
    exponents = _layers_below_output(num_layers)
    base = check_positive_float("derivative_max", derivative_max)
    # Underflow to zero (or overflow to inf for base > 1) is the documented, correctly rounded
    # float result here, so numpy's warnings about it would only be noise.
    with np.errstate(under="ignore", over="ignore"):
        return np.power(base, exponents, dtype=np.float64)


def log10_gradient_bound(
    num_layers: int, derivative_max: float = SIGMOID_DERIVATIVE_MAX
) -> np.ndarray:
    """Return `log10` of [`gradient_bound`][vangrad.gradient_bound], without ever underflowing.

    Entry `i` is `(num_layers - i) * log10(derivative_max)`, a product rather than a power, so it
    is accurate to a rounding error at any depth: a million sigmoid layers give a bound of
    `10 ** -602059.99...`, far below the smallest float64 (about `10 ** -324`).

    Args:
        num_layers: How many layers the gradient passes through; an integer >= 1.
        derivative_max: The largest local derivative of one layer; a finite number > 0.

    Returns:
        A float64 array of length `num_layers`, input layer first.

    Example:
        ```py
        from vangrad import gradient_bound, log10_gradient_bound

        print(log10_gradient_bound(3).round(4).tolist())
        #> [-1.8062, -1.2041, -0.6021]
        deep = 1_000_000
        print(gradient_bound(deep)[0], f"{log10_gradient_bound(deep)[0]:.2f}")
        #> 0.0 -602059.99
        ```
    """
    exponents = _layers_below_output(num_layers)
    base = check_positive_float("derivative_max", derivative_max)
    return exponents * math.log10(base)
