"""Argument checks shared by every public function.

Each check raises a `TypeError` or `ValueError` whose message names the argument and says what
is accepted, so a caller never meets a numpy traceback from deep inside the package.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable

import numpy as np

__all__ = [
    "CELLS",
    "CELL_GATES",
    "LOSSES",
    "RESIDUALS",
    "check_bool",
    "check_cell",
    "check_choice",
    "check_finite_array",
    "check_finite_arrays",
    "check_finite_float",
    "check_float_dtype",
    "check_instance",
    "check_loss",
    "check_loss_or_upstream",
    "check_nonnegative_float",
    "check_positive_float",
    "check_positive_int",
    "check_residual",
    "check_seed",
]


def _describe(value: object) -> str:
    return f"{value!r} (type {type(value).__name__})"


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Return `value` as an `int` if it is an integer of at least `minimum`.

    Booleans are refused even though `bool` subclasses `int`: `depth=True` is a bug, not a 1.
    Integral numpy scalars are accepted; floats such as `2.0` are not, because a silent
    truncation of `2.5` would hide a bug.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return `value` as a `float` if it is a finite real number > 0 (>= 0 with `allow_zero`)."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number {bound}, got {_describe(value)}")
    result = float(value)
    if not math.isfinite(result) or result < 0 or (result == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return result


def check_finite_float(name: str, value: object) -> float:
    """Return `value` as a `float` if it is a finite real number (of either sign)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number, got {_describe(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_instance(name: str, value: object, kind: type, what: str = "") -> None:
    """Refuse `value` unless it is a `kind`; `what` says where one comes from."""
    if not isinstance(value, kind):
        hint = f" ({what})" if what else ""
        raise TypeError(f"{name} must be a {kind.__name__}{hint}, got {_describe(value)}")


def check_nonnegative_float(name: str, value: object) -> float:
    """Return `value` as a `float` if it is a finite real number >= 0."""
    return check_positive_float(name, value, allow_zero=True)


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`; otherwise list them and suggest the closest."""
    options = sorted(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {options}, got {_describe(value)}")
    if value not in options:
        close = difflib.get_close_matches(value, options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {name} {value!r}: expected one of {options}{hint}")
    return value


LOSSES = {
    "sum": "the sum of the outputs: an upstream gradient of ones",
    "random": "a random linear loss: a standard normal upstream gradient, drawn from the seed",
}
"""The named losses, each a linear function of the output `h_L`, by the upstream gradient it sends.

Both are `sum(G * h_L)` for a fixed `G`; they differ in the direction of `G` (ones, or random).
Every function that builds or runs a network takes one of these names as `loss=`.
"""


def check_loss(value: object) -> str:
    """Return `value` if it names one of `LOSSES`, else raise naming `loss` and the choices."""
    return check_choice("loss", value, LOSSES)


def check_loss_or_upstream(loss: object, upstream: object, default: str) -> str:
    """`check_loss`, and refuse a named loss other than the `default` beside an `upstream`."""
    loss = check_loss(loss)
    if upstream is not None and loss != default:
        raise ValueError(
            f"give either upstream (an array or a function) or loss={loss!r}, not both: "
            f"loss names the upstream gradient, one of {sorted(LOSSES)}"
        )
    return loss


CELLS = {
    "rnn_tanh": "h_t = tanh(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh) (torch.nn.RNN)",
    "rnn_relu": "h_t = relu(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh) (nn.RNN, relu)",
    "rnn_sigmoid": "h_t = sigmoid(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh) (not in torch)",
    "lstm": "torch.nn.LSTM: gates i, f, g, o; c_t = f c_(t-1) + i g, h_t = o tanh(c_t)",
    "gru": "torch.nn.GRU: gates r, z, n; h_t = (1 - z) n + z h_(t-1)",
}
"""The recurrent cells of `backprop_through_time`, by the step they compute (PyTorch's)."""

CELL_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "rnn_sigmoid": 1, "lstm": 4, "gru": 3}
"""How many blocks of `H` rows each cell's `weight_ih`, `weight_hh` and biases stack (`G`)."""


def check_cell(value: object) -> str:
    """Return `value` if it names one of `CELLS`, else raise naming `cell` and the choices."""
    return check_choice("cell", value, CELLS)


RESIDUALS = {
    False: "no skip: h_l = phi(z_l)",
    True: "the identity-mapping block of He et al. (2016b): h_l = h_(l-1) + phi(z_l)",
    "post": "the block of He et al. (2016), ReLU after the addition: h_l = phi(h_(l-1) + z_l)",
}
"""The residual settings, by the layer they build.

`True` keeps the gradient's identity path exact (the Jacobian is `I + ...`); `"post"` applies
the activation to the sum, so the Jacobian is `D_l (I + W_l)` in column form: the identity
path passes through the activation's slopes too.
"""


def check_residual(value: object, name: str = "residual") -> bool | str:
    """Return `value` if it is one of `RESIDUALS` (`False`, `True` or `"post"`)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if value == "post" and isinstance(value, str):
        return "post"
    raise (ValueError if isinstance(value, str) else TypeError)(
        f"{name} must be False, True or 'post', got {_describe(value)}"
    )


def check_finite_array(
    name: str, value: object, *, ndim: Iterable[int], skip_finite_check: bool = False
) -> np.ndarray:
    """Return `value` as a floating-point array with one of the allowed numbers of dimensions.

    With `skip_finite_check` the caller checks for inf and nan itself (see `check_finite_arrays`).
    """
    allowed = tuple(ndim)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numeric array, got {_describe(value)}") from error
    # dtype.kind rather than np.issubdtype: a few microseconds a call, which add up over the
    # hundreds of small weight matrices of a deep, narrow network.
    kind = array.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    if kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim not in allowed:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {array.shape}"
        )
    if kind != "f":
        array = array.astype(np.float64)
    if not skip_finite_check and not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite: it contains inf or nan")
    return array


_JOINT_CHECK_ELEMENTS = 1 << 20


def check_finite_arrays(
    name: str, values: list | tuple, *, ndim: Iterable[int]
) -> list[np.ndarray]:
    """`check_finite_array` on each of `values`, named `name[i]` in messages.

    Small arrays are checked for inf and nan together, in one call over their concatenation:
    a network of hundreds of small layers otherwise spends more time validating its weights
    than running them.
    """
    allowed = tuple(ndim)
    arrays = [
        check_finite_array(f"{name}[{i}]", value, ndim=allowed, skip_finite_check=True)
        for i, value in enumerate(values)
    ]
    small = len(arrays) > 1 and sum(a.size for a in arrays) <= _JOINT_CHECK_ELEMENTS
    if small and np.isfinite(np.concatenate([a.reshape(-1) for a in arrays])).all():
        return arrays
    for i, array in enumerate(arrays):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}[{i}] must be finite: it contains inf or nan")
    return arrays


def check_bool(name: str, value: object) -> bool:
    """Return `value` as a `bool` if it is `True` or `False` (numpy booleans included).

    Truthy stand-ins such as `1` or `"yes"` are refused: `batchnorm="no"` would otherwise be on.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_float_dtype(name: str, value: object) -> np.dtype:
    """Return `value` as a numpy dtype if it names float32 or float64."""
    try:
        dtype = np.dtype(value)  # type: ignore[call-overload]
    except TypeError as error:
        raise TypeError(
            f"{name} must be one of ['float32', 'float64'], got {_describe(value)}"
        ) from error
    check_choice(name, dtype.name, ("float32", "float64"))
    return dtype


def check_seed(seed: object) -> np.random.Generator:
    """Return `seed` if it is a `numpy.random.Generator`, else `np.random.default_rng(seed)`.

    Every public function that draws random numbers takes either: an integer >= 0 for a
    reproducible draw, or a generator to continue drawing from.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be an integer >= 0 or a numpy.random.Generator, got {_describe(seed)}"
        )
    return np.random.default_rng(check_positive_int("seed", seed, minimum=0))
