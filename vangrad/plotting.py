"""Figures drawn from `vangrad`'s results, for the site, the notebooks and readers' own work.

Every function draws on an `Axes` it is given (or on a new figure) and returns the `Axes`, so a
reader can restyle it, put several on one figure, or call `plt.show()`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator

from vangrad.bounds import SIGMOID_DERIVATIVE_MAX, log10_gradient_bound

__all__ = ["plot_gradient_bound"]


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    return ax


def plot_gradient_bound(
    num_layers: int,
    derivative_max: float = SIGMOID_DERIVATIVE_MAX,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Plot the gradient-magnitude bound against the number of layers it passes through.

    The y axis is logarithmic (its ticks are powers of ten), so the exponential decay
    `derivative_max ** k` is a straight line. The curve is drawn from
    [`log10_gradient_bound`][vangrad.log10_gradient_bound], so it stays right at depths where
    the bound itself is far below the smallest float64.

    Args:
        num_layers: The deepest stack to show; an integer >= 1.
        derivative_max: The largest local derivative of one layer (0.25 for the sigmoid).
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad.plotting import plot_gradient_bound

        ax = plot_gradient_bound(1000)
        print(ax.get_xlabel())
        #> Number of sigmoid layers between the output and the layer, k
        print([label.get_text() for label in ax.get_yticklabels()][1:4])
        #> ['$10^{-600}$', '$10^{-500}$', '$10^{-400}$']
        ```
    """
    # log10 values stay exact where the powers would underflow; the function also validates.
    log_bound = log10_gradient_bound(num_layers, derivative_max)[::-1]
    k = np.arange(1, log_bound.size + 1)
    ax = _new_axes(ax)
    if derivative_max == SIGMOID_DERIVATIVE_MAX:
        label, layers = r"$0.25^k$ (sigmoid)", "sigmoid layers"
    else:
        label, layers = f"${derivative_max:g}^k$", "layers"
    # Plot in log10 space, then label the ticks as powers of ten, so values below float64's
    # smallest number still have a place on the axis.
    ax.plot(k, log_bound, marker="o" if k.size <= 40 else None, markersize=4, label=label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"$10^{{{value:g}}}$"))
    ax.set_xlabel(f"Number of {layers} between the output and the layer, k")
    ax.set_ylabel("Upper bound on the gradient (relative to the output)")
    ax.set_title("The most gradient that can survive k layers")
    ax.grid(visible=True, which="both", linestyle="--", alpha=0.5)
    ax.legend()
    ax.set_xlim(0, k[-1] + 1)
    return ax
