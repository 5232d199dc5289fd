"""Sweep a grid of activations, initialisers, weight scales and depths in a few batched runs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vangrad._validation import (
    check_bool,
    check_choice,
    check_finite_array,
    check_float_dtype,
    check_loss,
    check_positive_float,
    check_positive_int,
    check_residual,
    check_seed,
)
from vangrad.activations import Activation
from vangrad.engine import loss_upstream, run_network
from vangrad.initializers import Initializer, get_initializer
from vangrad.network_checks import (
    check_activation,
    check_batch_for_batchnorm,
    check_normalisation,
    check_width_for_layernorm,
)

__all__ = ["Sweep", "sweep"]


@dataclass(frozen=True, eq=False)
class Sweep:
    """The input-layer gradient over a grid, as `log10` norms.

    Every array of statistics has the axes `dims`:
    `(activation, init, batchnorm, residual, weight_scale, depth)`; `log10_input_grad` has one
    more axis, the trials.

    Attributes:
        activations: The activation names, labels of axis 0.
        inits: The initialiser names, labels of axis 1.
        batchnorm: Without (`False`) or with (`True`) batch normalisation, labels of axis 2.
        residual: The residual settings (`False`, `True`, `"post"`), labels of axis 3.
        weight_scales: The weight scales (standard deviations for `"normal"`, gains otherwise),
            labels of axis 4.
        depths: The depths, labels of axis 5.
        log10_input_grad: `log10 ||dLoss/dx||` for every grid point and trial.
        median: The median over trials of `log10_input_grad`. Quantiles here are trial values,
            never interpolated (numpy's `inverted_cdf`: the lower middle for an even count), so
            a trial whose gradient is exactly 0 gives `-inf`, not `nan`.
        q25: The lower quartile over trials.
        q75: The upper quartile over trials.
        overflow_fraction: The fraction of trials whose forward pass overflowed.
        log10_output_grad: `log10 ||dLoss/dh_L||`, the same at every grid point and for both
            losses: `log10 sqrt(batch_size * width)`, the norm of the sum loss's ones (the
            random loss is scaled to it). Subtract it from the statistics for the gradient at
            the input relative to the output.
        loss: The loss, one of `LOSSES`.
        layernorm: Whether every network of the grid had layer normalisation (a setting of
            the whole grid, not an axis; `batchnorm` is then `(False,)`).
        dims: The names of the axes.
    """

    activations: tuple[str, ...]
    inits: tuple[str, ...]
    batchnorm: tuple[bool, ...]
    residual: tuple[bool | str, ...]
    weight_scales: np.ndarray
    depths: np.ndarray
    log10_input_grad: np.ndarray = field(repr=False)
    median: np.ndarray
    q25: np.ndarray = field(repr=False)
    q75: np.ndarray = field(repr=False)
    overflow_fraction: np.ndarray = field(repr=False)
    log10_output_grad: float = 0.0
    loss: str = "sum"
    layernorm: bool = False
    dims: tuple[str, ...] = ("activation", "init", "batchnorm", "residual", "weight_scale", "depth")

    def labels(self, dim: str) -> list[object]:
        """The values along the axis `dim` (one of `dims`), as Python objects."""
        check_choice("dim", dim, self.dims)
        values = {
            "activation": self.activations,
            "init": self.inits,
            "batchnorm": self.batchnorm,
            "residual": self.residual,
            "weight_scale": self.weight_scales,
            "depth": self.depths,
        }[dim]
        return np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)

    def index(self, dim: str, value: object = None) -> int:
        """The position of `value` along the axis `dim`; `None` for the axis's only value.

        Raises:
            ValueError: If the grid has no such value, or `value` is `None` and the axis
                holds several values (the message lists them).

        Example:
            ```py
            from vangrad import sweep

            grid = sweep([5, 10], width=4, batch_size=2, trials=1, batchnorm=[False, True])
            print(grid.index("batchnorm", True), grid.index("depth", 10), grid.index("init"))
            #> 1 1 0
            ```
        """
        labels = self.labels(dim)
        if value is None:
            if len(labels) > 1:
                raise ValueError(f"the grid has several values of {dim}: choose one of {labels}")
            return 0
        for position, label in enumerate(labels):
            same_kind = isinstance(value, bool | np.bool_) == isinstance(label, bool)
            if same_kind and label == value:
                return position
        raise ValueError(f"the grid has no {dim} {value!r}: it has {labels}")


def sweep(
    depths: Sequence[int],
    *,
    width: int,
    batch_size: int,
    activations: Sequence[str | Activation] = ("tanh",),
    inits: Sequence[str | Initializer] = ("xavier_normal",),
    weight_scales: Sequence[float] | None = None,
    trials: int = 16,
    batchnorm: bool | Sequence[bool] = False,
    layernorm: bool = False,
    residual: bool | str | Sequence[bool | str] = False,
    seed: int | np.random.Generator = 0,
    dtype: str | type[np.floating] = "float64",
    loss: str = "sum",
) -> Sweep:
    """Measure the input-layer gradient norm over a grid of networks.

    For each initialiser, `trials` base networks of the largest depth are drawn once (with
    weight scale 1) and shared by every activation, weight scale and depth: a network of depth
    `d` uses the first `d` layers, and the weight scale multiplies the weights. These common
    random numbers make neighbouring grid points directly comparable. All weight scales (and
    trials) of one (activation, init, batchnorm, residual, depth) run as one stacked engine
    call. Each trial has its own input, standard normal of shape `(batch_size, width)`, and
    with `loss="random"` its own upstream gradient, drawn after the weights and shared, like
    them, by every grid point.

    Memory grows as `depth * len(weight_scales) * trials * batch_size * width` floats.

    Args:
        depths: The depths; integers >= 1.
        width: The number of units in every layer; an integer >= 1.
        batch_size: The number of input samples; an integer >= 1 (>= 2 with `batchnorm`).
        activations: Names from `ACTIVATIONS` (or `Activation`s).
        inits: Names from `INITIALIZERS` (or `Initializer`s).
        weight_scales: Standard deviations for `"normal"` (then required), gains for the
            others. Default: `[1.0]`.
        trials: The number of networks per grid point; an integer >= 1.
        batchnorm: Normalise each layer's pre-activations over the batch: a bool, or a list of
            the settings to compare, such as `[False, True]`.
        layernorm: Normalise each layer's pre-activations over its units, per sample, in every
            network of the grid (a bool, not an axis: the grid's shape stays the same; needs
            `width >= 2`, and `batchnorm` False). With the same `seed`, a grid with and one
            without it measure the same networks.
        residual: The residual block, one of `RESIDUALS` (`False`, `True`, `"post"`), or a
            list of them to compare, such as `[False, True, "post"]`.
        seed: An integer >= 0, or a `numpy.random.Generator`.
        dtype: `"float64"` (default) or `"float32"`.
        loss: `"sum"` (default), the sum of the outputs, or `"random"`, a random upstream
            gradient (see `vangrad.engine.loss_upstream`).

    Returns:
        A `Sweep`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a value is out of range, a name is unknown, or `weight_scales` is missing
            while `inits` includes `"normal"`.

    Example:
        ```py
        from vangrad import sweep

        scales = {"weight_scales": [0.1, 0.5], "inits": ["normal"]}
        grid = sweep([5, 20], width=16, batch_size=8, activations=["tanh", "relu"], **scales)
        print(grid.dims)
        #> ('activation', 'init', 'batchnorm', 'residual', 'weight_scale', 'depth')
        print(grid.median.shape)
        #> (2, 1, 1, 1, 2, 2)
        print(grid.median[0, 0, 0, 0].round(1).tolist())
        #> [[-1.1, -7.3], [1.2, 2.1]]
        ```
    """
    depth_values = _check_depths(depths)
    width = check_positive_int("width", width)
    batch_size = check_positive_int("batch_size", batch_size)
    trials = check_positive_int("trials", trials)
    acts = [check_activation(a) for a in _check_list("activations", activations)]
    initializers = [get_initializer(i) for i in _check_list("inits", inits)]
    scales = _check_scales(weight_scales, initializers)
    norms = _check_axis("batchnorm", batchnorm, check_bool)
    layernorm = check_bool("layernorm", layernorm)
    for norm in norms:
        check_normalisation(norm, layernorm)
    skips = _check_axis("residual", residual, lambda name, v: check_residual(v, name))
    float_dtype = check_float_dtype("dtype", dtype)
    loss = check_loss(loss)
    if any(norms):
        check_batch_for_batchnorm(batch_size, f"batch_size={batch_size}")
    if layernorm:
        check_width_for_layernorm(width, f"width={width}")
    rng = check_seed(seed)

    shape = (
        len(acts),
        len(initializers),
        len(norms),
        len(skips),
        scales.size,
        depth_values.size,
        trials,
    )
    values = np.empty(shape)
    overflowed = np.empty(shape, dtype=bool)
    gain = scales[:, np.newaxis]  # (scales, 1) against (trials,): a (scales, trials) stack
    max_depth = int(depth_values.max())
    for i, initializer in enumerate(initializers):
        x = rng.standard_normal((trials, batch_size, width), dtype=float_dtype)
        base = initializer.sample(
            rng, width, width, weight_scale=1.0, trials=max_depth * trials, dtype=float_dtype
        ).reshape(max_depth, trials, width, width)
        # One per trial; it broadcasts over the weight scales, as the weights do.
        upstream = loss_upstream(loss, (trials, batch_size, width), rng, float_dtype)
        for (a, act), (b, norm), (r, skip), (k, depth) in itertools.product(
            enumerate(acts), enumerate(norms), enumerate(skips), enumerate(depth_values)
        ):
            flow = run_network(
                x,
                list(base[:depth]),
                act,
                batchnorm=norm,
                layernorm=layernorm,
                residual=skip,
                upstream=upstream,
                gain=gain,
                measure_weight_grads=False,
            )
            values[a, i, b, r, :, k] = flow.log10_grad_norms[..., 0]
            overflowed[a, i, b, r, :, k] = flow.trial_overflow_layer > 0

    # No interpolation: a trial whose gradient is exactly 0 (log10 = -inf, a dead ReLU stack)
    # would turn an interpolated quantile into -inf - -inf = nan.
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75], axis=-1, method="inverted_cdf")
    return Sweep(
        activations=tuple(act.name for act in acts),
        inits=tuple(initializer.name for initializer in initializers),
        batchnorm=norms,
        residual=skips,
        weight_scales=scales,
        depths=depth_values,
        log10_input_grad=values,
        median=median,
        q25=q25,
        q75=q75,
        overflow_fraction=overflowed.mean(axis=-1),
        log10_output_grad=0.5 * float(np.log10(batch_size * width)),
        loss=loss,
        layernorm=layernorm,
    )


_EXAMPLES = {"depths": "[10, 50]", "weight_scales": "[0.5, 1.0, 1.5]"}


def _check_list(name: str, value: object) -> list[object]:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()
    if isinstance(value, str) or not isinstance(value, Sequence):
        example = _EXAMPLES.get(name, "['tanh']")
        raise TypeError(f"{name} must be a list, such as {example}, got {value!r}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    return list(value)


def _check_axis(
    name: str, value: object, check: Callable[[str, object], bool | str]
) -> tuple[bool | str, ...]:
    """One setting, or a list of distinct settings: the labels of an axis of the grid."""
    if not isinstance(value, Sequence | np.ndarray) or isinstance(value, str):
        return (check(name, value),)
    settings = tuple(check(f"{name}[{i}]", v) for i, v in enumerate(_check_list(name, value)))
    if len(set(settings)) != len(settings):
        raise ValueError(f"{name} lists a setting twice: {list(settings)}")
    return settings


def _check_depths(depths: object) -> np.ndarray:
    values = [
        check_positive_int(f"depths[{i}]", d) for i, d in enumerate(_check_list("depths", depths))
    ]
    return np.array(values)


def _check_scales(weight_scales: object, initializers: list[Initializer]) -> np.ndarray:
    if weight_scales is None:
        needs = [i.name for i in initializers if i.scale_is_std]
        if needs:
            raise ValueError(
                f"weight_scales is required for init {needs[0]!r}: it lists the standard "
                "deviations of the weights, such as [0.5, 1.0, 1.5]"
            )
        return np.ones(1)
    scales = check_finite_array(
        "weight_scales", _check_list("weight_scales", weight_scales), ndim=(1,)
    )
    for i, scale in enumerate(scales.tolist()):
        check_positive_float(f"weight_scales[{i}]", scale)
    return scales.astype(np.float64)
