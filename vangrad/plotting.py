"""Figures drawn from `vangrad`'s results, for the site, the notebooks and readers' own work.

Every function draws on an `Axes` it is given (or on a new figure) and returns the `Axes`, so a
reader can restyle it, put several on one figure, or call `plt.show()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import FuncFormatter, MaxNLocator

from vangrad._validation import (
    check_bool,
    check_choice,
    check_finite_array,
    check_finite_float,
    check_instance,
    check_positive_float,
    check_positive_int,
)
from vangrad.activations import Activation, get_activation
from vangrad.bounds import SIGMOID_DERIVATIVE_MAX, log10_gradient_bound
from vangrad.flow import SATURATION_THRESHOLD, GradientFlow
from vangrad.recurrent import RecurrentFlow
from vangrad.sweep import Sweep
from vangrad.theory import PhaseDiagram
from vangrad.training import Network, TrainingResult, predict_proba

__all__ = [
    "plot_activation",
    "plot_comparison",
    "plot_decision_boundary",
    "plot_gradient_bound",
    "plot_gradient_profile",
    "plot_gradient_through_time",
    "plot_layer_variances",
    "plot_loss_curves",
    "plot_loss_surface",
    "plot_phase_diagram",
    "plot_predicted_profile",
    "plot_singular_values",
    "plot_sweep",
    "plot_update_ratios",
    "saturation_edge",
]


def _new_axes(ax: Axes | None, name: str = "ax") -> Axes:
    if ax is not None:
        check_instance(name, ax, Axes, "or None for a new figure")
        return ax
    _, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    return ax


def _powers_of_ten(ax: Axes) -> None:
    """Label a y axis that holds log10 values as powers of ten: a log axis with no underflow."""
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"$10^{{{value:g}}}$"))


def plot_gradient_bound(
    num_layers: int,
    derivative_max: float = SIGMOID_DERIVATIVE_MAX,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Plot the gradient-magnitude bound against the number of layers it passes through.

    The bound holds for a chain of scalar units whose weights are at most 1 in size, which the
    title says. The y axis is logarithmic (its ticks are powers of ten), so the exponential decay
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
        print(ax.get_title())
        #> The most gradient that can survive k layers: a chain of scalar units, |w| ≤ 1
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
    _powers_of_ten(ax)
    ax.set_xlabel(f"Number of {layers} between the output and the layer, k")
    ax.set_ylabel("Upper bound on the gradient (relative to the output)")
    # The bound needs both conditions: one unit per layer and no weight larger than 1 in size.
    ax.set_title("The most gradient that can survive k layers: a chain of scalar units, |w| ≤ 1")
    ax.grid(visible=True, which="both", linestyle="--", alpha=0.5)
    ax.legend()
    ax.set_xlim(0, k[-1] + 1)
    return ax


def saturation_edge(
    activation: str | Activation, *, limit: float = 50.0, side: str = "right"
) -> float:
    """Return the smallest `|z|` beyond which the activation counts as saturated.

    Saturated means what the engine's `saturated_fraction` means: the local derivative is below
    1% of the activation's largest derivative. Found on a fine grid (steps of 1e-4), on the
    positive side by default; the sigmoid and tanh are symmetric, so the edge is the same on the
    left. Softplus saturates on the left only: ask for `side="left"`.

    Args:
        activation: A name from `ACTIVATIONS` or an `Activation`.
        limit: How far to look; the edge must lie below it.
        side: `"right"` (default) looks at `z > 0`, `"left"` at `z < 0`.

    Returns:
        The edge as a float, to four decimals.

    Raises:
        ValueError: If the derivative stays above the threshold up to `limit` (ReLU, linear).

    Example:
        ```py
        from vangrad.plotting import saturation_edge

        print(saturation_edge("sigmoid"), saturation_edge("tanh"))
        #> 5.9865 2.9933
        print(saturation_edge("softplus", side="left"))
        #> 4.5952
        ```
    """
    act = get_activation(activation)
    limit = check_positive_float("limit", limit)
    side = check_choice("side", side, ("right", "left"))
    z = np.arange(0.0, limit, 1e-4)
    sign = 1.0 if side == "right" else -1.0
    below = act.derivative(sign * z) < SATURATION_THRESHOLD * act.derivative_max
    if not below.any():
        raise ValueError(
            f"activation {act.name!r} does not saturate for |z| < {limit:g} on the {side}: its "
            f"derivative stays above {SATURATION_THRESHOLD:.0%} of its maximum"
        )
    return round(float(z[np.argmax(below)]), 4)


def plot_activation(
    activation: str | Activation,
    *,
    tangent_at: float | None = None,
    span: float = 8.0,
    shade: bool | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Plot an activation and its derivative, with the saturated regions shaded.

    Shaded: where the derivative is below 1% of its maximum (the engine's definition of a
    saturated unit). With `tangent_at`, the tangent line at that point is drawn too: its slope
    is the factor a gradient is multiplied by when it passes a unit sitting there.

    Args:
        activation: A name from `ACTIVATIONS` or an `Activation`.
        tangent_at: Where to draw the tangent, or `None` for no tangent.
        span: The x axis runs from `-span` to `span`.
        shade: Whether to shade the saturated regions; by default (`None`) only for bounded
            activations (sigmoid, tanh), since a ReLU's zero slope is a switched-off unit
            rather than a saturated one. Softplus saturates on one side: pass `True`.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad.plotting import plot_activation

        ax = plot_activation("sigmoid", tangent_at=2.0)
        _, labels = ax.get_legend_handles_labels()
        print(labels[-1])
        #> tangent at z = 2, slope 0.105
        ```
    """
    act = get_activation(activation)
    span = check_positive_float("span", span)
    if tangent_at is not None:
        tangent_at = check_finite_float("tangent_at", tangent_at)
    z = np.linspace(-span, span, 801)
    value, slope = act.value_and_derivative(z)
    shade = act.squashing if shade is None else check_bool("shade", shade)
    ax = _new_axes(ax)
    ax.plot(z, value, label=f"{act.name}(z)", color="C0", linewidth=2)
    ax.plot(z, slope, label=f"{act.name}'(z)", color="C1", linewidth=2, linestyle="--")
    if shade:
        saturated = slope < SATURATION_THRESHOLD * act.derivative_max
        ax.fill_between(
            z,
            0,
            1,
            where=saturated,
            transform=ax.get_xaxis_transform(),
            color="0.85",
            label=f"saturated: derivative < {SATURATION_THRESHOLD:.0%} of its peak",
        )
    if tangent_at is not None:
        point = np.array([float(tangent_at)])
        y0, k = (float(v[0]) for v in act.value_and_derivative(point))
        near = np.linspace(point[0] - 2, point[0] + 2, 2)
        ax.plot(
            near,
            y0 + k * (near - point[0]),
            color="C2",
            linewidth=1.5,
            label=f"tangent at z = {point[0]:g}, slope {k:.3g}",
        )
        ax.plot(point, [y0], "o", color="C2")
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xlim(-span, span)
    ax.set_xlabel("pre-activation z (unitless)")
    ax.set_ylabel("value")
    ax.set_title(f"{act.name} and its derivative (peak {act.derivative_max:.3g})")
    ax.grid(visible=True, linestyle="--", alpha=0.5)
    # Below the axes: inside, it would hide part of a curve for one activation or another.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize="small")
    return ax


def plot_gradient_profile(
    flow: GradientFlow,
    *,
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Plot the gradient norm at every layer, relative to the output, from a measured flow.

    For a stack of trials the line is the median over trials and the band the interquartile
    range. Values are `log10` norms from the engine, so layers whose gradient is far below the
    smallest float64 still have their place on the (power-of-ten) axis.

    Args:
        flow: What [`backprop`][vangrad.backprop] or [`simulate`][vangrad.simulate] measured.
        label: The legend entry; by default the activation's name.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad import simulate
        from vangrad.plotting import plot_gradient_profile

        flow = simulate(
            depth=20, width=64, batch_size=16, activation="sigmoid", init="lecun_normal", trials=4
        )
        ax = plot_gradient_profile(flow)
        print(ax.get_xlabel())
        #> layer l (0 = input)
        ```
    """
    check_instance("flow", flow, GradientFlow, "from backprop or simulate")
    relative = np.atleast_2d(flow.log10_grad_norms - flow.log10_grad_norms[..., -1:])
    layers = np.arange(relative.shape[-1])
    q25, median, q75 = np.quantile(relative, [0.25, 0.5, 0.75], axis=0, method="inverted_cdf")
    ax = _new_axes(ax)
    (line,) = ax.plot(layers, median, marker="o", markersize=3, label=label or flow.activation.name)
    if relative.shape[0] > 1:
        ax.fill_between(layers, q25, q75, color=line.get_color(), alpha=0.25, linewidth=0)
    _powers_of_ten(ax)
    ax.set_xlabel("layer l (0 = input)")
    ax.set_ylabel("||dLoss/dh_l|| relative to the output")
    ax.grid(visible=True, linestyle="--", alpha=0.5)
    ax.legend(fontsize="small")
    return ax


def plot_gradient_through_time(
    flow: RecurrentFlow,
    *,
    label: str | None = None,
    predicted_factor: float | None = None,
    cell_state: bool = False,
    ax: Axes | None = None,
) -> Axes:
    r"""Plot the gradient norm at every step of a recurrent layer, relative to the last step.

    For a stack of trials the line is the median over trials and the band the interquartile
    range. With `predicted_factor`, a dashed line of that factor per step (a mean-field
    prediction, say) starts from the median at the last step.

    Args:
        flow: What [`backprop_through_time`][vangrad.backprop_through_time] measured.
        label: The legend entry; by default the cell's name.
        predicted_factor: A factor per step to draw beside the measurement; positive.
        cell_state: The LSTM's cell-state gradient $\partial L / \partial c_t$ instead of
            $\partial L / \partial h_t$.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        import numpy as np

        from vangrad import backprop_through_time, recurrent_params
        from vangrad.plotting import plot_gradient_through_time

        params = recurrent_params("rnn_tanh", 4, 16, trials=3, seed=0)
        flow = backprop_through_time(np.ones((30, 2, 4)), "rnn_tanh", params)
        ax = plot_gradient_through_time(flow, predicted_factor=0.9)
        print(ax.get_xlabel())
        #> step t (0 = the initial state)
        ```
    """
    check_instance("flow", flow, RecurrentFlow, "from backprop_through_time")
    if predicted_factor is not None:
        predicted_factor = check_positive_float("predicted_factor", predicted_factor)
    if check_bool("cell_state", cell_state) and flow.log10_cell_grad_norms is None:
        raise ValueError(f"cell_state=True needs an LSTM's flow; this one is {flow.cell!r}'s")
    norms = flow.log10_cell_grad_norms if cell_state else flow.log10_grad_norms
    relative = np.atleast_2d(norms - norms[..., -1:])
    steps = np.arange(relative.shape[-1])
    q25, median, q75 = np.quantile(relative, [0.25, 0.5, 0.75], axis=0, method="inverted_cdf")
    ax = _new_axes(ax)
    (line,) = ax.plot(steps, median, label=label or flow.cell)
    if relative.shape[0] > 1:
        ax.fill_between(steps, q25, q75, color=line.get_color(), alpha=0.25, linewidth=0)
    if predicted_factor is not None:
        back = steps[-1] - steps
        ax.plot(steps, back * np.log10(predicted_factor), "--", color=line.get_color(), lw=1)
    _powers_of_ten(ax)
    ax.set_xlabel("step t (0 = the initial state)")
    ax.set_ylabel(f"||dLoss/d{'c' if cell_state else 'h'}_t|| relative to the last step")
    ax.grid(visible=True, linestyle="--", alpha=0.5)
    ax.legend(fontsize="small")
    return ax


def _diverging_norm(values: np.ndarray) -> TwoSlopeNorm:
    """A colour scale white at 0 (no change), each side using the full colour range.

    A modest explosion is then as visible as a deep vanishing.
    """
    finite = values[np.isfinite(values)]
    low = min(float(finite.min()) if finite.size else -1.0, -1.0)
    high = max(float(finite.max()) if finite.size else 1.0, 1.0)
    return TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high)


# What a sweep's residual setting adds to a label, by the setting (see RESIDUALS).
_RESIDUAL_LABELS: dict[bool | str, list[str]] = {
    False: [],
    True: ["residual"],
    "post": ["residual (post)"],
}


def _norm_labels(batchnorm: bool, layernorm: bool) -> list[str]:
    """What a sweep's normalisation adds to a label (at most one of the two is on)."""
    return ["batch norm"] if batchnorm else ["layer norm"] if layernorm else []


def _setting_label(batchnorm: bool, residual: bool | str, layernorm: bool = False) -> str:
    """A sweep column's name, its settings joined on two lines: "plain" when it has none."""
    parts = _norm_labels(batchnorm, layernorm) + _RESIDUAL_LABELS[residual]
    return "\n+ ".join(parts) or "plain"


def plot_comparison(
    grid: Sweep | Sequence[Sweep],
    *,
    depth: int | None = None,
    weight_scale: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Compare every (activation, init) against every (batchnorm, residual) setting of a sweep.

    One row per activation and initialiser, one column per combination of batch normalisation
    and residual connections; the colour and the number in each cell are the median over trials
    of `log10 (||dLoss/dx|| / ||dLoss/dh_L||)` at one depth and weight scale: blue where the
    gradient vanishes on its way to the input, red where it explodes. Several sweeps of the
    same activations and initialisers (one with `layernorm=True`, say) put their columns side
    by side, in order.

    Args:
        grid: A sweep result, or a list of them with the same activations and initialisers.
        depth: Which depth of each grid, such as `50`; may be left out if it has only one.
        weight_scale: Which weight scale of each grid; may be left out if it has only one.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Raises:
        TypeError: If `grid` is not a sweep result or a list of them.
        ValueError: If a grid lacks the depth or weight scale, or one is left out that the
            grid has several of, or the grids' activations or initialisers differ.

    Example:
        ```py
        from vangrad import sweep
        from vangrad.plotting import plot_comparison

        setup = {"width": 8, "batch_size": 4, "activations": ["tanh"]}
        grid = sweep([6], **setup, batchnorm=[False, True])
        ax = plot_comparison(grid)
        print([label.get_text() for label in ax.get_xticklabels()])
        #> ['plain', 'batch norm']
        ax = plot_comparison([grid, sweep([6], **setup, layernorm=True)])
        print([label.get_text() for label in ax.get_xticklabels()])
        #> ['plain', 'batch norm', 'layer norm']
        ```
    """
    grids = [grid] if isinstance(grid, Sweep) else grid
    if not isinstance(grids, list | tuple) or not grids:
        raise TypeError(
            f"grid must be a Sweep (from sweep) or a non-empty list of them, got "
            f"{type(grid).__name__}"
        )
    for index, each in enumerate(grids):
        check_instance(f"grid[{index}]", each, Sweep, "from sweep")
    first = grids[0]
    blocks, columns = [], []
    for index, each in enumerate(grids):
        if each.activations != first.activations or each.inits != first.inits:
            raise ValueError(
                f"grid[{index}] has activations {list(each.activations)} and inits "
                f"{list(each.inits)}, grid[0] {list(first.activations)} and "
                f"{list(first.inits)}: the grids must share their rows"
            )
        d = each.index("depth", depth)
        w = each.index("weight_scale", weight_scale)
        relative = each.median[..., w, d] - each.log10_output_grad
        blocks.append(relative.reshape(len(each.activations) * len(each.inits), -1))
        columns += [
            _setting_label(b, r, each.layernorm) for b in each.batchnorm for r in each.residual
        ]
    rows = np.concatenate(blocks, axis=1)
    ax = _new_axes(ax)
    norm = _diverging_norm(rows)
    mesh = ax.imshow(rows, cmap="RdBu_r", norm=norm, aspect="auto")
    for (i, j), value in np.ndenumerate(rows):
        dark = abs(float(norm(value)) - 0.5) > 0.3  # white text on the deep blues and reds
        color = "white" if dark else "black"
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize="small", color=color)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(
        range(rows.shape[0]), [f"{a}, {i}" for a in first.activations for i in first.inits]
    )
    ax.xaxis.tick_top()
    colorbar = ax.figure.colorbar(mesh, ax=ax)
    colorbar.set_label("median log10 of (gradient at input / at output)")
    shown_depth = int(first.depths[first.index("depth", depth)])
    ax.set_title(f"{shown_depth} layers: gradient at the first layer, relative to the output")
    return ax


def plot_sweep(
    grid: Sweep,
    *,
    activation: str | None = None,
    init: str | None = None,
    batchnorm: bool | None = None,
    residual: bool | str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Map the input-layer gradient over weight scales and depths from a [`sweep`][vangrad.sweep].

    Colour is the median over trials of the input gradient relative to the output gradient,
    `log10 (||dLoss/dx|| / ||dLoss/dh_L||)`: blue where it vanishes, red where it explodes,
    white where it arrives at the size it left, with contours at a factor of 10 and of 10^6
    either way. The band between the contours is where a network of
    that depth still passes a usable gradient to its first layer.

    Args:
        grid: A sweep result.
        activation: Which activation of the grid, such as `"tanh"`; may be left out if the
            grid has only one. Likewise:
        init: Which initialiser of the grid.
        batchnorm: Which batch-normalisation setting, `False` or `True`.
        residual: Which residual setting, `False`, `True` or `"post"`.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Raises:
        ValueError: If the grid lacks a value asked for, or a value is left out that the grid
            has several of (the message lists them).

    Example:
        ```py
        from vangrad import sweep
        from vangrad.plotting import plot_sweep

        scales = {"inits": ["lecun_normal"], "weight_scales": [0.5, 2]}
        grid = sweep([5, 10], width=8, batch_size=4, batchnorm=[False, True], **scales)
        ax = plot_sweep(grid, batchnorm=True)
        print(ax.get_xlabel(), "|", ax.get_title())
        #> network depth (layers) | tanh, lecun_normal, batch norm: gradient at the first layer
        ```
    """
    check_instance("grid", grid, Sweep, "from sweep")
    activation = grid.index("activation", activation)
    init = grid.index("init", init)
    batchnorm = grid.index("batchnorm", batchnorm)
    residual = grid.index("residual", residual)
    median = grid.median[activation, init, batchnorm, residual] - grid.log10_output_grad
    ax = _new_axes(ax)
    scales, depths = grid.weight_scales, grid.depths
    mesh = ax.pcolormesh(
        depths, scales, median, shading="nearest", cmap="RdBu_r", norm=_diverging_norm(median)
    )
    levels = [-6, -1, 1, 6]
    contours = ax.contour(depths, scales, median, levels=levels, colors="black", linewidths=0.8)
    ax.clabel(contours, fmt=lambda v: f"$10^{{{v:g}}}$", fontsize="small")
    colorbar = ax.figure.colorbar(mesh, ax=ax)
    colorbar.set_label("median log10 of (gradient at input / at output)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.set_xlabel("network depth (layers)")
    ax.set_ylabel("weight scale (gain on the initialiser)")
    settings = [grid.activations[activation], grid.inits[init]]
    settings += _norm_labels(grid.batchnorm[batchnorm], grid.layernorm)
    settings += _RESIDUAL_LABELS[grid.residual[residual]]
    ax.set_title(f"{', '.join(settings)}: gradient at the first layer")
    return ax


# --- training (vangrad.training) ----------------------------------------------------------------


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each run of `window` consecutive values (shorter at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_loss_curves(
    results: Mapping[str, TrainingResult],
    *,
    window: int = 20,
    ax: Axes | None = None,
) -> Axes:
    """Plot the training loss of several runs against the step.

    Each step's loss is that of its own random mini-batch, so the raw curve is noisy: it is drawn
    faintly, with its moving average over `window` steps on top.

    Args:
        results: A label and a [`train`][vangrad.training.train] result for each run.
        window: Steps in the moving average; an integer >= 1.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad.datasets import spirals
        from vangrad.plotting import plot_loss_curves
        from vangrad.training import make_network, train

        x, y = spirals(50, seed=0)
        net = make_network(2, 2, depth=2, width=8, activation="tanh", init="xavier_normal")
        result = train(net, x, y, steps=30, batch_size=16, learning_rate=0.1)
        ax = plot_loss_curves({"tanh": result})
        print(ax.get_ylabel())
        #> cross-entropy loss (mini-batch)
        ```
    """
    window = check_positive_int("window", window)
    if not isinstance(results, Mapping) or not results:
        raise TypeError("results must be a non-empty mapping of labels to TrainingResults")
    ax = _new_axes(ax)
    for index, (label, result) in enumerate(results.items()):
        steps = np.arange(1, result.steps + 1)
        color = f"C{index}"
        ax.plot(steps, result.loss, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, _moving_average(result.loss, window), color=color, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy loss (mini-batch)")
    ax.set_ylim(bottom=0)
    ax.grid(visible=True, linestyle="--", alpha=0.5)
    ax.legend(fontsize="small")
    return ax


def plot_decision_boundary(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    *,
    resolution: int = 150,
    ax: Axes | None = None,
) -> Axes:
    """Colour the plane by the class a two-input network predicts, with the data on top.

    Args:
        network: A network with two input features and no batch normalisation (which would
            normalise with the statistics of the grid of points, not of the data).
        x: The points, shape `(n, 2)`.
        y: Their integer labels, shape `(n,)`.
        resolution: Grid points along each axis; an integer >= 2.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad.datasets import spirals
        from vangrad.plotting import plot_decision_boundary
        from vangrad.training import make_network

        x, y = spirals(50, seed=0)
        net = make_network(2, 2, depth=2, width=8, activation="tanh", init="xavier_normal")
        ax = plot_decision_boundary(net, x, y, resolution=20)
        print(ax.get_aspect())
        #> 1.0
        ```
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, got {type(network).__name__}")
    if network.n_features != 2 or network.batchnorm:
        raise ValueError(
            "plot_decision_boundary needs a network with 2 input features and no batchnorm "
            f"(got {network.n_features} features, batchnorm={network.batchnorm})"
        )
    resolution = check_positive_int("resolution", resolution, minimum=2)
    points = check_finite_array("x", x, ndim=(2,))
    labels = check_finite_array("y", y, ndim=(1,))
    if points.shape[-1] != 2 or labels.shape[0] != points.shape[0]:
        raise ValueError(
            f"x must have shape (n, 2) and y shape (n,), got {points.shape} and {labels.shape}"
        )
    low, high = points.min(axis=0) - 0.2, points.max(axis=0) + 0.2
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution)
    )
    grid = np.column_stack([grid_x.ravel(), grid_y.ravel()])
    predicted = predict_proba(network, grid).argmax(axis=1).reshape(grid_x.shape)
    classes = network.n_classes
    colors = [plt.get_cmap("tab10")(c) for c in range(classes)]
    ax = _new_axes(ax)
    ax.contourf(
        grid_x,
        grid_y,
        predicted,
        levels=np.arange(classes + 1) - 0.5,
        colors=colors,
        alpha=0.3,
    )
    for c in range(classes):
        chosen = labels == c
        ax.scatter(*points[chosen].T, s=8, color=colors[c], edgecolors="none", label=f"class {c}")
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return ax


def plot_update_ratios(
    result: TrainingResult,
    *,
    steps_per_column: int = 1,
    vmin: float | None = None,
    vmax: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Map `log10 (||Delta W_l|| / ||W_l||)` over training steps (x) and layers (y).

    The ratio is the fraction of a layer's weights that one step changes; around `10^-3` is
    often quoted as healthy for SGD. A layer whose ratio sits many powers of ten below the
    others is not learning.

    Args:
        result: A [`train`][vangrad.training.train] result.
        steps_per_column: Each column shows the mean of the `log10` ratio over this many
            consecutive steps (the last column over what is left): a smoother map, and a
            smaller image; an integer >= 1.
        vmin: The bottom of the colour scale (a power of ten); pass the same `vmin` and `vmax`
            to compare runs side by side. Default: the smallest finite value.
        vmax: The top of the colour scale. Default: the largest finite value.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad.datasets import spirals
        from vangrad.plotting import plot_update_ratios
        from vangrad.training import make_network, train

        x, y = spirals(50, seed=0)
        net = make_network(2, 2, depth=3, width=8, activation="tanh", init="xavier_normal")
        result = train(net, x, y, steps=20, batch_size=16, learning_rate=0.1)
        ax = plot_update_ratios(result, vmin=-6, vmax=-1)
        print([label.get_text() for label in ax.get_yticklabels()])
        #> ['1', '2', '3', 'readout']
        ```
    """
    if not isinstance(result, TrainingResult):
        raise TypeError(f"result must be a TrainingResult, got {type(result).__name__}")
    steps_per_column = check_positive_int("steps_per_column", steps_per_column)
    vmin = None if vmin is None else check_finite_float("vmin", vmin)
    vmax = None if vmax is None else check_finite_float("vmax", vmax)
    with np.errstate(divide="ignore"):
        log_ratios = np.log10(result.update_ratios).T  # layers down, steps across
    starts = np.arange(0, result.steps, steps_per_column)
    with np.errstate(invalid="ignore"):  # -inf + inf where a column mixes zero and inf
        log_ratios = np.add.reduceat(log_ratios, starts, axis=1) / np.diff(
            np.append(starts, result.steps)
        )
    # Each column at the middle of its steps (1-based).
    columns = starts + (np.diff(np.append(starts, result.steps)) + 1) / 2
    finite = log_ratios[np.isfinite(log_ratios)]
    low = vmin if vmin is not None else float(finite.min()) if finite.size else -1.0
    high = vmax if vmax is not None else float(finite.max()) if finite.size else 0.0
    layers = result.update_ratios.shape[1]
    ax = _new_axes(ax)
    mesh = ax.pcolormesh(
        columns,
        np.arange(1, layers + 1),
        log_ratios,
        shading="nearest",
        cmap="viridis",
        vmin=low,
        vmax=high,
        rasterized=True,
    )
    colorbar = ax.figure.colorbar(mesh, ax=ax)
    colorbar.set_label(r"$\log_{10}$ update ratio $\|\Delta W_l\| / \|W_l\|$")
    ax.set_yticks(np.arange(1, layers + 1))
    ax.set_yticklabels([*(str(layer) for layer in range(1, layers)), "readout"])
    ax.invert_yaxis()  # the first layer at the top, as the network is usually drawn
    ax.set_xlabel("training step")
    ax.set_ylabel("layer")
    return ax


# --- the theory pages ----------------------------------------------------------------------------


def plot_predicted_profile(
    flow: GradientFlow,
    predicted: np.ndarray,
    *,
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Plot a measured gradient profile with the mean-field prediction beside it, dashed.

    Args:
        flow: What the engine measured (a stack of trials gives a median and a band).
        predicted: `log10` norms relative to the output for layers `0..L`, as returned by
            [`predicted_log10_grad_norms`][vangrad.predicted_log10_grad_norms].
        label: The legend entry of the measured curve; by default the activation's name.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad.plotting import plot_predicted_profile
        from vangrad.theory import predicted_log10_grad_norms, simulate_mean_field

        flow = simulate_mean_field(10, 64, sigma_w2=1.0, activation="tanh", batch_size=4)
        ax = plot_predicted_profile(flow, predicted_log10_grad_norms(10, 1.0))
        print(len(ax.get_lines()))
        #> 2
        ```
    """
    check_instance("flow", flow, GradientFlow, "from backprop or simulate")
    predicted = check_finite_array("predicted", predicted, ndim=(1,))
    ax = plot_gradient_profile(flow, label=f"{label or flow.activation.name}, measured", ax=ax)
    color = ax.get_lines()[-1].get_color()
    ax.plot(
        np.arange(np.size(predicted)), predicted, color=color, linestyle="--", label="predicted"
    )
    ax.legend(fontsize="small")
    return ax


def plot_phase_diagram(
    grid: object,
    critical: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Colour a `(sigma_w^2, sigma_b^2)` grid by the measured gradient ratio; draw a line on it.

    Args:
        grid: A [`PhaseDiagram`][vangrad.theory.PhaseDiagram].
        critical: Optional `(sigma_w2, sigma_b2)` points of the predicted critical line.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        from vangrad.plotting import plot_phase_diagram
        from vangrad.theory import critical_line, phase_diagram

        grid = phase_diagram([0.5, 2.0, 4.0], [0.0, 0.5], depth=10, width=16, batch_size=2)
        ax = plot_phase_diagram(grid, critical_line([0.01, 1.0]))
        print(ax.get_xlabel())
        #> weight variance sigma_w^2 = n Var(W)
        ```
    """
    check_instance("grid", grid, PhaseDiagram, "from phase_diagram")
    if critical is not None and (not isinstance(critical, tuple) or len(critical) != 2):
        raise TypeError(
            f"critical must be a pair of arrays (from critical_line) or None, got {critical!r}"
        )
    ax = _new_axes(ax)
    ratio = grid.log10_ratio.T  # rows: sigma_b^2, columns: sigma_w^2
    finite = ratio[np.isfinite(ratio)]
    # Each side of white spans its own range, so mild explosion shows as well as deep vanishing.
    low = min(float(finite.min(initial=-1.0)), -1.0)
    high = max(float(finite.max(initial=1.0)), 1.0)
    mesh = ax.pcolormesh(
        grid.sigma_w2,
        grid.sigma_b2,
        ratio,
        shading="nearest",
        cmap="RdBu_r",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high),
    )
    colorbar = ax.figure.colorbar(mesh, ax=ax)
    colorbar.set_label(f"log10 (gradient at input / at output), {grid.depth} layers")
    ax.contour(grid.sigma_w2, grid.sigma_b2, ratio, levels=[0.0], colors="black", linewidths=0.8)
    if critical is not None:
        ax.plot(*critical, color="gold", linewidth=2.5, linestyle="--", label="predicted chi_1 = 1")
        ax.legend(fontsize="small", loc="upper left")
    ax.set_xlim(grid.sigma_w2[0], grid.sigma_w2[-1])
    ax.set_ylim(grid.sigma_b2[0], grid.sigma_b2[-1])
    ax.set_xlabel("weight variance sigma_w^2 = n Var(W)")
    ax.set_ylabel("bias variance sigma_b^2")
    return ax


def plot_singular_values(
    spectra: dict[str, np.ndarray], *, bins: int = 50, floor: float = 1e-4, ax: Axes | None = None
) -> Axes:
    """Histogram the singular values of several Jacobians on a log axis (one outline per label).

    The spread of a deep network's spectrum covers orders of magnitude, so the bins are equal in
    `log10`; values below `floor` (ReLU's Jacobians are rank-deficient: exact zeros) are counted
    in the first bin, which is shaded, and each label says how many of its values that bin holds
    for this reason.

    Example:
        ```py
        import numpy as np

        from vangrad.plotting import plot_singular_values

        ax = plot_singular_values({"identity": np.ones(10), "rank 5": np.repeat([0.0, 0.5], 5)})
        print(ax.get_xlabel())
        #> singular value of the input-output Jacobian
        print([text.get_text() for text in ax.get_legend().get_texts()])
        #> ['identity', 'rank 5 (5 of 10 below 0.0001, in the first bin)']
        ```
    """
    if not isinstance(spectra, Mapping) or not spectra:
        raise TypeError(f"spectra must be a non-empty mapping of labels to arrays, got {spectra!r}")
    bins = check_positive_int("bins", bins)
    floor = check_positive_float("floor", floor)
    ax = _new_axes(ax)
    top = max(float(np.max([np.max(v) for v in spectra.values()])), floor * 10)
    edges = np.geomspace(floor, top * 1.05, bins + 1)
    clipped_any = False
    for name, singular in spectra.items():
        raw = np.ravel(singular)
        below = int(np.sum(raw < floor))
        label = name
        if below:
            clipped_any = True
            label = f"{name} ({below} of {raw.size} below {floor:g}, in the first bin)"
        ax.hist(np.clip(raw, floor, None), bins=edges, histtype="step", linewidth=1.6, label=label)
    if clipped_any:
        # A reader must not mistake the pile-up of clipped values for part of the spectrum.
        ax.axvspan(edges[0], edges[1], color="grey", alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("singular value of the input-output Jacobian")
    ax.set_ylabel("count")
    ax.legend(fontsize="small")
    return ax


def plot_layer_variances(
    flows: dict[str, GradientFlow],
    predicted: dict[str, np.ndarray] | None = None,
    *,
    axes: tuple[Axes, Axes] | None = None,
) -> Axes:
    """Plot, per layer, the variance of the back-propagated and of the weight gradients.

    Both are relative to the top layer and averaged (in log) over the trials, as in Glorot and
    Bengio's figures 6 and 7: the left panel `dLoss/dh_l` for the layers' inputs `l = 0..L-1`,
    the right panel `dLoss/dW_l` for `l = 1..L`. Equal widths are assumed, so a variance ratio
    is a ratio of squared norms.

    Args:
        flows: Label -> a measured flow (with trials).
        predicted: Label -> predicted `log10` variance of `dLoss/dh_l` relative to the top
            layer's input, drawn dashed on the left panel.
        axes: Two axes to draw on; a new figure when omitted.

    Returns:
        The left `Axes`.

    Example:
        ```py
        from vangrad import simulate
        from vangrad.plotting import plot_layer_variances

        flow = simulate(depth=3, width=8, activation="tanh", init="xavier_uniform", batch_size=2)
        ax = plot_layer_variances({"xavier": flow})
        print(ax.get_xlabel())
        #> layer input h_l (0 = the network's input)
        ```
    """
    if not isinstance(flows, Mapping) or not flows:
        raise TypeError(
            f"flows must be a non-empty mapping of labels to GradientFlows, got {flows!r}"
        )
    for label, flow in flows.items():
        check_instance(f"flows[{label!r}]", flow, GradientFlow, "from simulate")
    if predicted is not None and not isinstance(predicted, Mapping):
        raise TypeError(
            f"predicted must be a mapping of labels to arrays or None, got {predicted!r}"
        )
    if axes is not None:
        if not isinstance(axes, tuple | list) or len(axes) != 2:
            raise TypeError(f"axes must be a pair of matplotlib Axes or None, got {axes!r}")
        for index, one in enumerate(axes):
            _new_axes(one, f"axes[{index}]")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharey=True)
    left, right = axes
    for label, flow in flows.items():
        grads = np.atleast_2d(flow.log10_grad_norms)[:, :-1]
        back = 2 * (grads - grads[:, -1:]).mean(axis=0)
        weights = np.atleast_2d(flow.log10_weight_grad_norms)
        weight = 2 * (weights - weights[:, -1:]).mean(axis=0)
        (line,) = left.plot(np.arange(back.size), back, marker="o", label=f"{label}, measured")
        right.plot(np.arange(1, weight.size + 1), weight, marker="o", label=label)
        if predicted is not None and label in predicted:
            left.plot(
                np.arange(back.size),
                predicted[label],
                linestyle="--",
                color=line.get_color(),
                label=f"{label}, predicted",
            )
    for ax in axes:
        _powers_of_ten(ax)
        ax.grid(visible=True, linestyle="--", alpha=0.5)
        ax.legend(fontsize="small")
    left.set_xlabel("layer input h_l (0 = the network's input)")
    left.set_ylabel("variance relative to the top layer")
    left.set_title("back-propagated gradient dLoss/dh_l")
    right.set_xlabel("layer l")
    right.set_title("weight gradient dLoss/dW_l")
    return left


def plot_loss_surface(
    x: np.ndarray,
    y: np.ndarray,
    loss: np.ndarray,
    *,
    paths: Mapping[str, np.ndarray] | None = None,
    xlabel: str = "w",
    ylabel: str = "b",
    ax: Axes | None = None,
) -> Axes:
    """Draw a loss over a grid of two parameters, on a log colour scale, with descent paths.

    A cliff, where the loss drops by a large factor across a narrow band, shows as a sharp
    edge between colours. Each path is drawn as a line with a dot per iterate, the first one
    wider than the rest, so that a path which retraces it stays visible; the axes stay on the
    grid, so a path thrown far away leaves the picture where it jumps.

    Args:
        x: The first parameter's values, increasing, shape `(n,)`.
        y: The second parameter's values, increasing, shape `(m,)`.
        loss: The loss at every pair, shape `(m, n)` (row `i` is `y[i]`); finite, > 0.
        paths: Label -> the iterates of a descent, shape `(k, 2)`, columns `(x, y)`.
        xlabel: The first parameter's name.
        ylabel: The second parameter's name.
        ax: Where to draw; a new figure when omitted.

    Returns:
        The `Axes` drawn on.

    Example:
        ```py
        import numpy as np

        from vangrad.plotting import plot_loss_surface

        x, y = np.linspace(-1, 1, 5), np.linspace(0, 1, 3)
        loss = 1 + x[None, :] ** 2 + y[:, None]
        ax = plot_loss_surface(x, y, loss, paths={"descent": np.array([[1.0, 1.0], [0.5, 0.5]])})
        print(ax.get_xlabel(), ax.get_ylabel(), ax.get_legend().get_texts()[0].get_text())
        #> w b descent
        ```
    """
    check_instance("xlabel", xlabel, str)
    check_instance("ylabel", ylabel, str)
    x = check_finite_array("x", x, ndim=[1])
    y = check_finite_array("y", y, ndim=[1])
    loss = check_finite_array("loss", loss, ndim=[2])
    for name, values in (("x", x), ("y", y)):
        if values.size < 2 or np.any(np.diff(values) <= 0):
            raise ValueError(f"{name} must hold at least 2 increasing values")
    if loss.shape != (y.size, x.size):
        raise ValueError(
            f"loss must have shape (len(y), len(x)) = {(y.size, x.size)}, got {loss.shape}"
        )
    if np.any(loss <= 0):
        raise ValueError("loss must be > 0 everywhere: it is drawn on a log colour scale")
    if paths is not None and not isinstance(paths, Mapping):
        raise TypeError(f"paths must be a mapping of labels to (k, 2) arrays, got {paths!r}")
    checked = {
        label: check_finite_array(f"paths[{label!r}]", path, ndim=[2])
        for label, path in (paths or {}).items()
    }
    for label, path in checked.items():
        if path.shape[1] != 2:
            raise ValueError(f"paths[{label!r}] must have shape (k, 2), got {path.shape}")
    ax = _new_axes(ax)
    # Rasterized: a fine grid drawn as vector cells would weigh megabytes on the page.
    mesh = ax.pcolormesh(x, y, np.log10(loss), shading="nearest", cmap="viridis", rasterized=True)
    ax.figure.colorbar(mesh, ax=ax, label="log10 loss")
    for index, (label, path) in enumerate(checked.items()):
        # The first path is drawn wider: a later one that retraces it stays visible on top.
        wide = index == 0 and len(checked) > 1
        ax.plot(
            path[:, 0],
            path[:, 1],
            ".-",
            markersize=7 if wide else 4,
            linewidth=3.0 if wide else 1.2,
            label=label,
        )
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if checked:
        ax.legend(fontsize="small")
    return ax
