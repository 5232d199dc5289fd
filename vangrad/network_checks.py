"""Checks of a network's arguments: that the weights, biases, input and upstream gradient fit.

Each check raises a `TypeError` or `ValueError` naming the argument, so that the engines can
run on arrays they know to be consistent.
"""

from __future__ import annotations

import numpy as np

from vangrad._validation import check_finite_array, check_finite_arrays
from vangrad.activations import Activation, get_activation

__all__ = [
    "check_activation",
    "check_batch_for_batchnorm",
    "check_biases",
    "check_input",
    "check_residual_widths",
    "check_upstream",
    "check_weights",
]


def check_activation(activation: object) -> Activation:
    """An `Activation` from a registry name or an `Activation`."""
    if not isinstance(activation, str | Activation):
        raise TypeError(
            "activation must be a name such as 'tanh' or an Activation, "
            f"got {type(activation).__name__}"
        )
    return get_activation(activation)


def check_batch_for_batchnorm(batch_size: int, got: str) -> None:
    """Refuse a batch of one sample for batch normalisation; `got` says where it came from."""
    if batch_size < 2:
        raise ValueError(
            "batchnorm=True needs a batch of at least 2 samples (the batch variance of one "
            f"sample is 0), got {got}"
        )


def check_weights(weights: object) -> list[np.ndarray]:
    """One 2-D matrix per layer (or 3-D, stacked networks), whose shapes chain."""
    if not isinstance(weights, list | tuple):
        raise TypeError(
            f"weights must be a list of arrays, one per layer, got {type(weights).__name__}"
        )
    if not weights:
        raise ValueError("weights must hold at least one layer, got an empty list")
    checked = check_finite_arrays("weights", weights, ndim=(2, 3))
    ndim = checked[0].ndim
    for i, w in enumerate(checked):
        if w.ndim != ndim:
            raise ValueError(
                f"weights[{i}] has shape {w.shape} but weights[0] has shape {checked[0].shape}: "
                "use 2-D weights for one network or 3-D (trials, n_in, n_out) for all layers"
            )
        if ndim == 3 and w.shape[0] != checked[0].shape[0]:
            raise ValueError(
                f"weights[{i}] stacks {w.shape[0]} trials but weights[0] stacks "
                f"{checked[0].shape[0]}"
            )
        if 0 in w.shape:
            raise ValueError(f"weights[{i}] has shape {w.shape}: every dimension must be >= 1")
        if i > 0 and w.shape[-2] != checked[i - 1].shape[-1]:
            raise ValueError(
                f"weights[{i}] has shape {w.shape} but layer {i} outputs "
                f"{checked[i - 1].shape[-1]} features"
            )
    return checked


def check_biases(biases: object, weights: list[np.ndarray]) -> list[np.ndarray]:
    """One vector per layer, returned shaped `(..., 1, n_l)` to broadcast against `z_l`."""
    if not isinstance(biases, list | tuple):
        raise TypeError(
            f"biases must be a list of vectors, one per layer, got {type(biases).__name__}"
        )
    if len(biases) != len(weights):
        raise ValueError(
            f"biases must hold one vector per layer: got {len(biases)} for {len(weights)} layers"
        )
    checked = []
    for i, (b, w) in enumerate(zip(biases, weights, strict=True)):
        expected = (*w.shape[:-2], w.shape[-1])
        array = check_finite_array(f"biases[{i}]", b, ndim=(1, 2))
        if array.shape != expected and array.shape != expected[-1:]:
            raise ValueError(
                f"biases[{i}] has shape {array.shape} but weights[{i}] has shape {w.shape}: "
                f"expected {expected}" + (f" or {expected[-1:]}" if len(expected) == 2 else "")
            )
        checked.append(array[..., np.newaxis, :])
    return checked


def check_input(x: object, weights: list[np.ndarray]) -> np.ndarray:
    """The input batch: `(batch, n_0)`, or `(trials, batch, n_0)` with stacked weights."""
    stacked = weights[0].ndim == 3
    x_array = check_finite_array("x", x, ndim=(2, 3) if stacked else (2,))
    if 0 in x_array.shape:
        raise ValueError(
            f"x must hold at least one sample of at least one feature, got shape {x_array.shape}"
        )
    if x_array.ndim == 3 and x_array.shape[0] != weights[0].shape[0]:
        raise ValueError(
            f"x stacks {x_array.shape[0]} trials but the weights stack {weights[0].shape[0]}"
        )
    if x_array.shape[-1] != weights[0].shape[-2]:
        raise ValueError(
            f"weights[0] has shape {weights[0].shape} but x has {x_array.shape[-1]} features "
            f"(x has shape {x_array.shape})"
        )
    return x_array


def check_residual_widths(weights: list[np.ndarray], residual: object = True) -> None:
    """Residual connections add a layer's input to its output: every layer keeps its width."""
    for i, w in enumerate(weights):
        if w.shape[-2] != w.shape[-1]:
            raise ValueError(
                f"residual={residual!r} needs every layer to keep its width (it adds h_(l-1) to "
                f"the layer's output), but weights[{i}] has shape {w.shape}"
            )


def check_upstream(
    upstream: object,
    output_shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    name: str = "upstream",
    finite: bool = True,
) -> np.ndarray:
    """`dLoss/dh_L` in the network's dtype, broadcast to the output's shape.

    With `finite` (the default) it must be finite. A loss gradient computed from an output that
    overflowed may not be: that overflow is recorded in the result, not refused.
    """
    array = check_finite_array(
        name, upstream, ndim=range(len(output_shape) + 1), skip_finite_check=not finite
    )
    with np.errstate(over="ignore"):
        cast = array.astype(dtype, copy=False)
    if finite and not np.all(np.isfinite(cast)):
        raise ValueError(f"{name} overflows in {np.dtype(dtype).name}, the network's dtype")
    try:
        return np.broadcast_to(cast, output_shape)
    except ValueError as error:
        raise ValueError(
            f"{name} has shape {array.shape} but the output h_L has shape {output_shape}"
        ) from error
