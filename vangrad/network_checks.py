"""Checks of a network's arguments: that the weights, biases, input and upstream gradient fit.

Each check raises a `TypeError` or `ValueError` naming the argument, so that the engines can
run on arrays they know to be consistent.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np

from vangrad._validation import CELL_GATES, check_bool, check_finite_array, check_finite_arrays
from vangrad.activations import Activation, get_activation

__all__ = [
    "check_activation",
    "check_batch_for_batchnorm",
    "check_biases",
    "check_initial_state",
    "check_input",
    "check_normalisation",
    "check_recurrent_params",
    "check_residual_widths",
    "check_sequence",
    "check_upstream",
    "check_weights",
    "check_width_for_layernorm",
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


def check_normalisation(batchnorm: object, layernorm: object) -> tuple[bool, bool]:
    """`batchnorm` and `layernorm` as bools, at most one of them on."""
    batchnorm = check_bool("batchnorm", batchnorm)
    layernorm = check_bool("layernorm", layernorm)
    if batchnorm and layernorm:
        raise ValueError(
            "batchnorm=True and layernorm=True cannot be combined: a layer normalises its z_l "
            "either over the batch (batchnorm, per unit) or over its units (layernorm, per "
            "sample); choose one"
        )
    return batchnorm, layernorm


def check_width_for_layernorm(width: int, got: str) -> None:
    """Refuse a layer of one unit for layer normalisation; `got` says where it came from."""
    if width < 2:
        raise ValueError(
            "layernorm=True needs layers of at least 2 units (one unit normalised over itself "
            f"is always 0, whatever its input), got {got}"
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
    output: str = "h_L",
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
            f"{name} has shape {array.shape} but the output {output} has shape {output_shape}"
        ) from error


RECURRENT_WEIGHTS = ("weight_ih", "weight_hh")
RECURRENT_BIASES = ("bias_ih", "bias_hh")


def check_recurrent_params(params: object, cell: str) -> dict[str, np.ndarray]:
    """PyTorch's parameters of one recurrent layer, checked against each other and the cell.

    `weight_ih`, `weight_hh`, and both biases or neither, with `cell`'s `G` gate blocks.
    Shapes: `weight_ih` `(G*H, N)`, `weight_hh` `(G*H, H)`, biases `(G*H,)`; all with one
    leading `trials` axis for a stack of networks, or none.
    """
    if not isinstance(params, Mapping):
        raise TypeError(
            "params must be a mapping from parameter names ('weight_ih', 'weight_hh', "
            f"'bias_ih', 'bias_hh') to arrays, got {type(params).__name__}"
        )
    accepted = [*RECURRENT_WEIGHTS, *RECURRENT_BIASES]
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if isinstance(key, str) and key.endswith("_l0"):
                hint = "; PyTorch's state_dict adds the layer to the name: drop the '_l0'"
            raise ValueError(f"unknown key {key!r} in params: expected {accepted}{hint}")
    missing = [key for key in RECURRENT_WEIGHTS if key not in params]
    if missing:
        raise ValueError(f"params is missing {missing}: it needs {list(RECURRENT_WEIGHTS)}")
    given_biases = [key for key in RECURRENT_BIASES if key in params]
    if len(given_biases) == 1:
        other = next(key for key in RECURRENT_BIASES if key not in params)
        raise ValueError(
            f"params has {given_biases[0]!r} but not {other!r}: give both biases (PyTorch's "
            "bias=True) or neither (bias=False); a zero vector stands for a missing one"
        )
    w_hh = check_finite_array("params['weight_hh']", params["weight_hh"], ndim=(2, 3))
    stacked = w_hh.ndim == 3
    gates = CELL_GATES[cell]
    hidden = w_hh.shape[-1]
    if 0 in w_hh.shape or w_hh.shape[-2] != gates * hidden:
        raise ValueError(
            f"params['weight_hh'] has shape {w_hh.shape} but cell={cell!r} stacks {gates} "
            f"gate block(s) of H rows: expected (G*H, H) = ({gates} * H, H) with H >= 1, "
            f"such as ({gates * max(hidden, 1)}, {max(hidden, 1)})"
        )
    checked = {"weight_hh": w_hh}
    stack = w_hh.shape[:-2]
    expected_ndim = {"weight_ih": 2 + stacked, "bias_ih": 1 + stacked, "bias_hh": 1 + stacked}
    for key in ("weight_ih", *given_biases):
        name = f"params[{key!r}]"
        array = check_finite_array(name, params[key], ndim=(1, 2, 3))
        if array.ndim != expected_ndim[key]:
            what = "stacked along a leading trials axis" if stacked else "not stacked"
            raise ValueError(
                f"{name} has shape {array.shape} but params['weight_hh'] has shape "
                f"{w_hh.shape} ({what}): stack every parameter, or none"
            )
        if array.shape[: len(stack)] != stack:
            raise ValueError(
                f"{name} stacks {array.shape[0]} trials but params['weight_hh'] stacks {stack[0]}"
            )
        rows = array.shape[len(stack)]
        if rows != gates * hidden or 0 in array.shape:
            expected = f"({gates * hidden}, N)" if key == "weight_ih" else f"({gates * hidden},)"
            raise ValueError(
                f"{name} has shape {array.shape} but params['weight_hh'] has shape "
                f"{w_hh.shape}: cell={cell!r} with H = {hidden} needs {expected}"
                + (" with N >= 1" if key == "weight_ih" else "")
            )
        checked[key] = array
    return checked


def check_sequence(x: object, params: dict[str, np.ndarray]) -> np.ndarray:
    """The input sequence, sequence first: `(T, batch, N)`, or `(trials, T, batch, N)` if stacked.

    Like PyTorch's (`batch_first=False`); `T >= 1`.
    """
    w_ih = params["weight_ih"]
    stacked = w_ih.ndim == 3
    x_array = check_finite_array("x", x, ndim=(3, 4) if stacked else (3,))
    steps = x_array.shape[-3]
    if steps == 0:
        raise ValueError(
            f"x holds a sequence of length T = 0 (shape {x_array.shape}): the recurrent layer "
            "needs at least one step, x of shape (T, batch, N) with T >= 1"
        )
    if 0 in x_array.shape:
        raise ValueError(
            f"x must hold at least one sample of at least one feature, got shape {x_array.shape}"
        )
    if x_array.ndim == 4 and x_array.shape[0] != w_ih.shape[0]:
        raise ValueError(
            f"x stacks {x_array.shape[0]} trials but the parameters stack {w_ih.shape[0]}"
        )
    if x_array.shape[-1] != w_ih.shape[-1]:
        raise ValueError(
            f"params['weight_ih'] has shape {w_ih.shape} but x has {x_array.shape[-1]} features "
            f"(x has shape {x_array.shape}, sequence first: (T, batch, N))"
        )
    return x_array


def check_initial_state(name: str, value: object, state_shape: tuple[int, ...]) -> np.ndarray:
    """`h0` or `c0`: shaped `(batch, H)`, or `(trials, batch, H)` with stacked parameters.

    `state_shape` is the full shape of the state, `(*stack, batch, H)`; an unstacked state is
    shared by every trial.
    """
    array = check_finite_array(name, value, ndim=(2, 3))
    if array.shape != state_shape and array.shape != state_shape[-2:]:
        allowed = " or ".join(str(s) for s in dict.fromkeys([state_shape, state_shape[-2:]]))
        raise ValueError(
            f"{name} has shape {array.shape} but the hidden state has shape {allowed} "
            "((batch, H), with a leading trials axis for stacked parameters)"
        )
    return array
