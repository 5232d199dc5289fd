"""What a forward and backward pass measured (`GradientFlow`), and the measurements themselves.

Both engines, the reference one in `vangrad.engine` and the fast one in `vangrad.fast_engine`,
return a `GradientFlow` and take their measurements with the functions here, so that they define
a norm, a saturated unit or an overflowed layer in the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vangrad.activations import Activation

__all__ = [
    "BATCHNORM_EPSILON",
    "SATURATION_THRESHOLD",
    "GradientFlow",
    "binary_exponent",
    "frobenius_norms",
    "log10_norms",
    "log10_scale",
    "overflow_layers",
    "rescale",
    "unscale",
]

BATCHNORM_EPSILON = 1e-5
"""Added to the variance before the square root in batch and in layer normalisation."""

SATURATION_THRESHOLD = 0.01
"""A unit is saturated when `|phi'(z)|` is below this fraction of the activation's maximum."""


@dataclass(frozen=True, eq=False)
class GradientFlow:
    r"""What one forward and backward pass measured.

    Shapes: `(L + 1,)` and `(L,)` for a single network; `(trials, L + 1)` and `(trials, L)` for a
    stack. Index 0 of the gradient arrays is the input $x = h_0$, index $L$ the output $h_L$;
    index $l - 1$ of the per-layer arrays is layer $l$.

    Attributes:
        log10_grad_norms: $\log_{10}$ of the Frobenius norm of $g_l = \partial L / \partial h_l$,
            for $l = 0, \dots, L$. Exact at any depth; `-inf` only where the gradient is exactly
            zero.
        log10_weight_grad_norms: $\log_{10}$ of the Frobenius norm of
            $\partial L / \partial W_l$, for $l = 1, \dots, L$.
        activation_mean: The mean of the activation $\phi(z_l)$ over the batch and the units
            (the layer's output $h_l$ without a residual connection).
        activation_std: The standard deviation of $\phi(z_l)$ over the batch and the units.
        saturated_fraction: The fraction of units (over the batch) whose local derivative
            $|\phi'(z_l)|$ is below 1% of the activation's `derivative_max`. For ReLU that is the
            fraction of inactive units (dying ReLU); for leaky ReLU with slope 0.01 it is 0.
        overflow_layer: The first layer ($1, \dots, L$) in which a forward value ($z_l$ or $h_l$)
            became inf or nan, in any trial; `None` if none did. Gradients after an overflow
            are not meaningful.
        trial_overflow_layer: The same per trial (an int array, 0 where the trial never
            overflowed).
        output: The network's output $h_L$, shape `(batch, n_L)` or `(trials, batch, n_L)`.
        activation: The activation used.
        batchnorm: Whether batch normalisation was on.
        layernorm: Whether layer normalisation was on.
        residual: The residual setting: `False`, `True` (identity skips) or `"post"` (the
            activation after the addition).
        grads: With `keep_grads=True`, the gradients $g_l$ for $l = 0, \dots, L$ (each shaped
            like $h_l$, per trial); otherwise `None`. Plain floats: they can underflow.
        weight_grads: With `keep_grads=True`, the gradients $\partial L / \partial W_l$ for
            $l = 1, \dots, L$; otherwise `None`.
        log10_bias_grad_norms: $\log_{10}$ of the norm of $\partial L / \partial b_l$, for
            $l = 1, \dots, L$, when the network has biases; otherwise `None`.
        bias_grads: With `keep_grads=True` and biases, the gradients
            $\partial L / \partial b_l$ for $l = 1, \dots, L$ (shape `(n_l,)`, or
            `(trials, n_l)`); otherwise `None`.
    """

    log10_grad_norms: np.ndarray
    log10_weight_grad_norms: np.ndarray
    activation_mean: np.ndarray
    activation_std: np.ndarray
    saturated_fraction: np.ndarray
    overflow_layer: int | None
    trial_overflow_layer: np.ndarray = field(repr=False)
    output: np.ndarray = field(repr=False)
    activation: Activation = field(repr=False)
    batchnorm: bool = False
    layernorm: bool = False
    residual: bool | str = False
    grads: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    weight_grads: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    log10_bias_grad_norms: np.ndarray | None = field(default=None, repr=False)
    bias_grads: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    @property
    def depth(self) -> int:
        """The number of layers `L`."""
        return self.log10_weight_grad_norms.shape[-1]

    @property
    def grad_norms(self) -> np.ndarray:
        """`10 ** log10_grad_norms`: the norms as floats, which underflow to 0.0 in deep stacks."""
        with np.errstate(under="ignore", over="ignore"):
            return np.power(10.0, self.log10_grad_norms)

    @property
    def weight_grad_norms(self) -> np.ndarray:
        """`10 ** log10_weight_grad_norms`, which underflows to 0.0 in deep stacks."""
        with np.errstate(under="ignore", over="ignore"):
            return np.power(10.0, self.log10_weight_grad_norms)


def _sum_of_squares(a: np.ndarray) -> np.ndarray:
    """Sum of squares over the last two axes, as float64 (a dot product: fast, no temporary)."""
    flat = a.reshape(*a.shape[:-2], -1)
    return np.vecdot(flat, flat).astype(np.float64, copy=False)


_SMALLEST_SAFE_SQUARE: dict[np.dtype, float] = {}  # np.finfo costs microseconds a call


def frobenius_norms(a: np.ndarray) -> np.ndarray:
    """The Frobenius norm over the last two axes, in float64, without over- or underflow.

    A weight gradient can be far outside the float range even when every entry is not (its
    squares overflow first), so where the plain sum of squares is unsafe the matrix is first
    divided by its largest entry.
    """
    squares = _sum_of_squares(a)
    smallest = _SMALLEST_SAFE_SQUARE.get(a.dtype)
    if smallest is None:
        smallest = _SMALLEST_SAFE_SQUARE.setdefault(
            a.dtype, float(np.finfo(a.dtype).smallest_normal) * 1e4
        )
    if squares.min() > smallest and squares.max() < np.inf:
        return np.sqrt(squares)
    largest = np.max(np.abs(a), axis=(-2, -1), keepdims=True)
    safe = np.where((largest > 0) & np.isfinite(largest), largest, 1)
    return np.sqrt(_sum_of_squares(a / safe)) * safe[..., 0, 0].astype(np.float64)


def binary_exponent(norms: np.ndarray) -> np.ndarray:
    """`e` with `norm = m * 2**e` and `0.5 <= m < 1`; 0 where the norm is 0, inf or nan."""
    return np.frexp(norms)[1]


def rescale(g: np.ndarray, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`g * 2**-e` (of norm `m`, between 0.5 and 1) and `e`, the binary exponent of `norms`.

    Only the exponents of the entries change, so the result is exact, and the same whenever
    the gradient is rescaled: that is why the fast engine's chunks of unscaled layers give the
    reference's numbers. A norm of 0, inf or nan has `e = 0`: nothing to rescale.
    """
    exponent = binary_exponent(norms)
    return np.ldexp(g, -exponent[..., np.newaxis, np.newaxis]), exponent


def log10_norms(norms: np.ndarray, scale: np.ndarray | int) -> np.ndarray:
    """`log10` of the true norms of gradients `g * 2**scale` whose own norms are `norms`."""
    return np.log10(norms) + log10_scale(scale)


def log10_scale(scale: np.ndarray | int) -> np.ndarray:
    """`log10(2**scale)`."""
    return scale * _LOG10_2


def unscale(g: np.ndarray, scale: np.ndarray | int) -> np.ndarray:
    """The true gradient `g * 2**scale`, as a plain float array (it may underflow to 0).

    Where the true gradient is beyond the float range it becomes inf, silently: the `log10`
    norms, which stay exact, are the measurement, and the plain array only what fits.
    """
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(g, np.asarray(scale)[..., np.newaxis, np.newaxis])


_LOG10_2 = math.log10(2.0)


def overflow_layers(finite: np.ndarray) -> tuple[int | None, np.ndarray]:
    """From `finite`, shape `(L, *stack)`, the first overflowed layer overall and per network."""
    overflowed = ~finite
    per_network = np.where(overflowed.any(axis=0), overflowed.argmax(axis=0) + 1, 0)
    first = int(per_network[per_network > 0].min()) if overflowed.any() else None
    return first, per_network
