"""The activation functions, each with its derivative and the largest value that derivative takes.

One registry, `ACTIVATIONS`, maps a name to an `Activation`. Every function and derivative is
vectorised and numerically stable: no overflow warning and no `nan` for any finite input, however
large. `derivative` takes the pre-activation `z`; where the value `phi(z)` gives the derivative
exactly, the engine derives it from the value instead (see `Activation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from vangrad._validation import check_choice, check_positive_float

__all__ = ["ACTIVATIONS", "Activation", "conform_to_layer", "get_activation", "values_and_slopes"]

ArrayFunction = Callable[[np.ndarray], np.ndarray]

# The tanh approximation of GELU: 0.5 z (1 + tanh(u)) with u = c (z + k z^3).
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715
# Beyond |z| = 1e3 the GELU's sigmoid factor is exactly 0 or 1 in float64 (|2u| > 1e7), so the
# cubic is clipped there: same results, and z**3 never overflows.
_GELU_CLIP = 1e3


@dataclass(frozen=True, eq=False)
class Activation:
    """An activation function `phi` with its derivative.

    Attributes:
        name: The registry name, such as `"sigmoid"`.
        function: `phi(z)`, elementwise.
        derivative: `phi'(z)`, elementwise, from the pre-activation `z`.
        derivative_max: The supremum of `phi'` over the real line (reached or approached).
        squashing: Whether `phi` is bounded (sigmoid, tanh): its derivative then tends to 0 at
            both ends, the classic cause of vanishing gradients.
        description: One line saying what the function is (and which approximation, if any).
        params: The parameters the activation was built with, such as `{"slope": 0.01}`.

    Example:
        ```py
        import numpy as np

        from vangrad import Activation, backprop

        softsign = Activation(
            "softsign", lambda z: z / (1 + np.abs(z)), lambda z: 1 / (1 + np.abs(z)) ** 2, 1.0, True
        )
        flow = backprop(np.ones((2, 3)), [np.eye(3)] * 2, softsign)
        print(flow.log10_grad_norms.round(3).tolist())
        #> [-0.565, 0.037, 0.389]
        ```
    """

    name: str
    function: ArrayFunction = field(repr=False)
    derivative: ArrayFunction = field(repr=False)
    derivative_max: float
    squashing: bool
    description: str = ""
    params: Mapping[str, float] = field(default_factory=dict)
    # What the engines use beyond the public fields, set only for the built-in activations
    # (see `_built_in`): not constructor arguments.
    both: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = field(
        default=None, init=False, repr=False
    )
    """`(phi(z), phi'(z))` in one pass (one `exp` serves both for tanh and sigmoid)."""
    factory: Callable[..., Activation] | None = field(default=None, init=False, repr=False)
    """What rebuilds the activation with other parameters (`with_params`)."""
    slope_from_value: ArrayFunction | None = field(default=None, init=False, repr=False)
    """`phi'(z)` from `a = phi(z)`, where that is exact (ReLU: `z > 0` exactly when `a > 0`;
    it may return a boolean mask). The fast engine then caches no slopes for the layer."""
    approximate_slope_from_value: ArrayFunction | None = field(default=None, init=False, repr=False)
    """`phi'(z)` from `a`, exact for most entries but not all (tanh: `1 - a^2` cancels where
    `|z| > 2`). For large plain layers the fast engine keeps `a` and the true slopes of only
    the entries where this differs from them: about half the memory of every slope."""

    def value_and_derivative(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return `(phi(z), phi'(z))`, sharing the work between the two where possible.

        Example:
            ```py
            import numpy as np

            from vangrad import get_activation

            value, slope = get_activation("tanh").value_and_derivative(np.array([0.0, 1.0]))
            print(value.round(4).tolist(), slope.round(4).tolist())
            #> [0.0, 0.7616] [1.0, 0.42]
            ```
        """
        if self.both is not None:
            return self.both(z)
        return self.function(z), self.derivative(z)

    def with_params(self, **params: float) -> Activation:
        """Return this activation rebuilt with other parameters, such as `slope=0.2`.

        Raises:
            TypeError: If a parameter is not one this activation takes.
            ValueError: If a parameter value is out of range.

        Example:
            ```py
            from vangrad import ACTIVATIONS

            leaky = ACTIVATIONS["leaky_relu"].with_params(slope=0.2)
            print(leaky.params, leaky.derivative_max)
            #> {'slope': 0.2} 1.0
            ```
        """
        if not params:
            return self
        unknown = sorted(set(params) - set(self.params))
        if unknown or self.factory is None:
            accepted = sorted(self.params) or "none"
            raise TypeError(
                f"activation {self.name!r} got unexpected parameters {unknown or sorted(params)}; "
                f"it accepts: {accepted}"
            )
        return self.factory(**{**self.params, **params})


def conform_to_layer(
    activation: Activation, part: str, result: object, z: np.ndarray
) -> np.ndarray:
    """`result` of `activation.<part>(z)` as an array shaped like `z`, or a `TypeError`.

    A scalar (a constant derivative, say) is broadcast; any other shape that is not `z`'s is a
    bug in a custom activation, which numpy would otherwise broadcast silently.
    """
    shape = np.shape(result)
    if shape == z.shape:
        return result  # type: ignore[return-value]
    if shape == ():
        return np.broadcast_to(result, z.shape).astype(z.dtype)
    raise TypeError(
        f"activation {activation.name!r}: its {part} returned an array of shape {shape} for "
        f"z of shape {z.shape}; it must return an array shaped like z (or a scalar)"
    )


def values_and_slopes(activation: Activation, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`phi(z)` and `phi'(z)`, both shaped like `z` (see `conform_to_layer`)."""
    value, slope = activation.value_and_derivative(z)
    return (
        conform_to_layer(activation, "function", value, z),
        conform_to_layer(activation, "derivative", slope, z),
    )


# --- the functions -------------------------------------------------------------------------------


def _sigmoid_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return `e = exp(-|z|)`, `r = 1 / (1 + e)` and `sigmoid(z)`, all without overflow."""
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(z))
    r = 1.0 / (1.0 + e)
    # sigmoid(z) = r for z >= 0 and e * r (= exp(z) / (1 + exp(z))) for z < 0.
    s = np.where(z >= 0, r, e * r)
    return e, r, s


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # r = 1 / (1 + e) with e = exp(-|z|) <= 1: no overflow, and e underflows gracefully (through
    # the subnormals) for z < -709, where 1 / (1 + exp(-z)) would overflow to 0. sigmoid(z) is
    # r for z >= 0 and e r for z < 0. Eight numpy calls: the engine calls this once a layer,
    # and for small layers per-call overhead is the cost.
    e = np.exp(np.negative(np.abs(z)))  # not in place: z may be an integer or a scalar
    s = 1.0 / (1.0 + e)
    return np.where(np.less(z, 0), e * s, s)


def _sigmoid_derivative(z: np.ndarray) -> np.ndarray:
    return _sigmoid_both(z)[1]


def _scalar_as_array(
    both: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Let `both`, which writes into its results in place, take a scalar too."""

    def wrapped(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.asarray(z)
        if z.ndim == 0:
            value, slope = both(z.reshape(1))
            return value[0], slope[0]
        return both(z)

    return wrapped


@_scalar_as_array
def _sigmoid_both(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # s (1 - s) from the value is accurate wherever 1 - s is not small; beyond z = 2 (1 in
    # float32), where it would cancel, e s^2 with e = exp(-z) (= e / (1 + e)^2) takes over.
    s = _sigmoid(z)
    slope = np.subtract(1.0, s)
    slope *= s
    _recompute_where(slope, z, np.greater(z, _slope_from_value_up_to(z)), _sigmoid_slope_far)
    return s, slope


def _sigmoid_slope_far(z: np.ndarray) -> np.ndarray:
    """`sigmoid'(z) = e / (1 + e)^2` with `e = exp(-z)`, for `z > 1` (no overflow there)."""
    e = np.exp(-z)
    r = e + 1.0
    r *= r
    return np.divide(e, r, out=e)


def _slope_from_value_up_to(z: np.ndarray) -> float:
    """How far from 0 the slope may come from the value (1 - t^2, s (1 - s)) in z's dtype.

    The value's own rounding error, relative eps, becomes a relative error of about
    2 eps / (1 - t^2) in 1 - t^2: 3e-15 at |z| = 2 in float64, but 1.7e-6 in float32, too much
    for the float32 norms of a 50-layer network to stay within 1e-5 of float64. float32 stops
    at |z| = 1 (3e-7), where 1 - t^2 = 0.42.
    """
    return 1.0 if np.asarray(z).dtype == np.float32 else 2.0


def _recompute_where(
    out: np.ndarray, z: np.ndarray, where: np.ndarray, function: ArrayFunction
) -> None:
    """Overwrite `out` with `function(z)` where `where` is True (usually few entries)."""
    indices = np.flatnonzero(where)
    if indices.size:
        out.reshape(-1)[indices] = function(np.ravel(z)[indices])


@_scalar_as_array
def _tanh_both(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # 1 - t^2 from the value is accurate for |z| <= 2 (1 in float32, see
    # _slope_from_value_up_to); beyond, t is within rounding of +-1 and 1 - t^2 cancels (to 0
    # for |z| > 19), so there the slope is recomputed from exp(-2|z|), exact far into the tails.
    # numpy's tanh, in every dtype and for every size: a network's result must not depend on
    # how many networks share its array (a chaotic network turns one ulp into another answer).
    t = np.tanh(z)
    slope = _tanh_slope_from_value(t)
    _recompute_where(slope, z, np.greater(np.abs(z), _slope_from_value_up_to(z)), _tanh_slope_far)
    return t, slope


def _tanh_slope_from_exp(e: np.ndarray) -> np.ndarray:
    """`1 - tanh(z)^2 = 4 e / (1 + e)^2` from `e = exp(-2|z|)`, in place on `e`.

    Accurate where `1 - t*t` would cancel (large `|z|`).
    """
    denominator = e + 1.0
    denominator *= denominator
    e *= 4.0
    e /= denominator
    return e


def _tanh_slope_far(z: np.ndarray) -> np.ndarray:
    """`1 - tanh(z)^2 = 4 e / (1 + e)^2` with `e = exp(-2|z|)`, without cancellation."""
    # exp(-800) is already 0; the cap keeps -2|z| from overflowing for |z| near 1e308.
    e = np.minimum(np.abs(z), 400.0)
    e *= -2.0
    with np.errstate(under="ignore"):
        np.exp(e, out=e)
    return _tanh_slope_from_exp(e)


def _tanh_derivative(z: np.ndarray) -> np.ndarray:
    return _tanh_both(z)[1]


def _sigmoid_slope_from_value(s: np.ndarray) -> np.ndarray:
    slope = np.subtract(1.0, s)
    slope *= s
    return slope


def _tanh_slope_from_value(t: np.ndarray) -> np.ndarray:
    slope = np.multiply(t, t)
    np.subtract(1.0, slope, out=slope)
    return slope


def _float_dtype(z: np.ndarray) -> np.dtype:
    """The dtype of the derivative: z's if floating (float32 stays float32), else float64."""
    return np.result_type(z.dtype, np.float32) if z.dtype.kind == "f" else np.dtype(np.float64)


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def _relu_derivative(z: np.ndarray) -> np.ndarray:
    return (z > 0).astype(_float_dtype(z))


def _positive(a: np.ndarray) -> np.ndarray:
    # max(z, 0) > 0 exactly when z > 0, nan included (max(nan, 0) is nan; neither is > 0).
    return np.greater(a, 0)


def _softplus(z: np.ndarray) -> np.ndarray:
    # log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)).
    with np.errstate(under="ignore"):
        tail = np.log1p(np.exp(-np.abs(z)))
    tail += np.maximum(z, 0)
    return tail


def _linear(z: np.ndarray) -> np.ndarray:
    return z.copy()


def _ones(z: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


def _gelu_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the clipped `z`, `e`, `r` and `s = sigmoid(2u)`, so `gelu(z) = z * s`."""
    clipped = np.clip(z, -_GELU_CLIP, _GELU_CLIP)
    two_u = clipped * clipped
    two_u *= _GELU_K
    two_u += 1.0
    two_u *= clipped
    two_u *= 2.0 * _GELU_C
    e, r, s = _sigmoid_parts(two_u)
    return clipped, e, r, s


def _gelu_both(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clipped, e, r, s = _gelu_parts(z)
    # d/dz [z s(2u)] = s + z * sigmoid'(2u) * 2 u'(z), u'(z) = c (1 + 3k z^2). Where |z| was
    # clipped, sigmoid'(2u) = e r^2 is exactly 0, so the clipped z gives the exact result.
    slope = clipped * clipped
    slope *= 3.0 * _GELU_K
    slope += 1.0
    slope *= clipped
    slope *= 2.0 * _GELU_C
    slope *= e
    slope *= r
    slope *= r
    slope += s
    return z * s, slope


def _gelu(z: np.ndarray) -> np.ndarray:
    return z * _gelu_parts(z)[3]


def _gelu_derivative(z: np.ndarray) -> np.ndarray:
    return _gelu_both(z)[1]


def _maximise(function: ArrayFunction, low: float, high: float) -> float:
    """Return the maximum of a smooth unimodal `function` on `[low, high]` by grid refinement."""
    for _ in range(6):
        grid = np.linspace(low, high, 1001)
        best = int(np.argmax(function(grid)))
        step = grid[1] - grid[0]
        low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
        if step < 1e-13:
            break
    return float(np.max(function(np.linspace(low, high, 1001))))


def _built_in(activation: Activation, **internals: object) -> Activation:
    """`activation` with the engine's internals set (`both`, `factory`, `slope_from_value`, ...)."""
    for name, value in internals.items():
        object.__setattr__(activation, name, value)  # frozen: set once, before anyone has it
    return activation


# --- the parameterised families ---------------------------------------------------------------


def _leaky_relu(slope: float = 0.01) -> Activation:
    slope = check_positive_float("slope", slope)

    def function(z: np.ndarray) -> np.ndarray:
        return np.where(z > 0, z, slope * z)

    def derivative(z: np.ndarray) -> np.ndarray:
        return np.where(z > 0, 1.0, slope).astype(_float_dtype(z), copy=False)

    return _built_in(
        Activation(
            name="leaky_relu",
            description=f"leaky ReLU: z for z > 0, {slope:g} z otherwise",
            function=function,
            derivative=derivative,
            derivative_max=max(1.0, slope),
            squashing=False,
            params={"slope": slope},
        ),
        factory=_leaky_relu,
    )


def _elu(alpha: float = 1.0) -> Activation:
    alpha = check_positive_float("alpha", alpha)

    def exponential_part(z: np.ndarray) -> np.ndarray:
        # exp(min(z, 0)): the positive side never reaches exp, so it cannot overflow.
        with np.errstate(under="ignore"):
            return np.exp(np.minimum(z, 0))

    def function(z: np.ndarray) -> np.ndarray:
        with np.errstate(under="ignore"):
            negative = np.expm1(np.minimum(z, 0))
        negative *= alpha
        return np.where(z > 0, z, negative)

    def derivative(z: np.ndarray) -> np.ndarray:
        part = exponential_part(z)
        part *= alpha
        return np.where(z > 0, 1.0, part).astype(_float_dtype(z), copy=False)

    return _built_in(
        Activation(
            name="elu",
            description=f"ELU: z for z > 0, {alpha:g} (exp(z) - 1) otherwise",
            function=function,
            derivative=derivative,
            # 1 on the right; alpha exp(z) approaches alpha from the left.
            derivative_max=max(1.0, alpha),
            squashing=False,
            params={"alpha": alpha},
        ),
        factory=_elu,
    )


ACTIVATIONS: Mapping[str, Activation] = MappingProxyType(
    {
        "sigmoid": _built_in(
            Activation(
                name="sigmoid",
                description=(
                    "logistic sigmoid 1 / (1 + exp(-z)); derivative at most 1/4, at z = 0"
                ),
                function=_sigmoid,
                derivative=_sigmoid_derivative,
                derivative_max=0.25,
                squashing=True,
            ),
            both=_sigmoid_both,
            approximate_slope_from_value=_sigmoid_slope_from_value,
        ),
        "tanh": _built_in(
            Activation(
                name="tanh",
                description="hyperbolic tangent; derivative at most 1, at z = 0",
                function=np.tanh,
                derivative=_tanh_derivative,
                derivative_max=1.0,
                squashing=True,
            ),
            both=_tanh_both,
            approximate_slope_from_value=_tanh_slope_from_value,
        ),
        "relu": _built_in(
            Activation(
                name="relu",
                description=("ReLU max(z, 0); derivative 1 for z > 0 and 0 otherwise (0 at z = 0)"),
                function=_relu,
                derivative=_relu_derivative,
                derivative_max=1.0,
                squashing=False,
            ),
            slope_from_value=_positive,
        ),
        "leaky_relu": _leaky_relu(),
        "elu": _elu(),
        "gelu": _built_in(
            Activation(
                name="gelu",
                description=(
                    "GELU, tanh approximation: 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))"
                ),
                function=_gelu,
                derivative=_gelu_derivative,
                # About 1.129, at z of about 1.5: computed, not typed.
                derivative_max=_maximise(_gelu_derivative, 0.0, 4.0),
                squashing=False,
            ),
            both=_gelu_both,
        ),
        "softplus": Activation(
            name="softplus",
            description="softplus log(1 + exp(z)); derivative sigmoid(z), supremum 1 (not reached)",
            function=_softplus,
            derivative=_sigmoid,
            derivative_max=1.0,
            squashing=False,
        ),
        "linear": Activation(
            name="linear",
            description="identity z; derivative 1",
            function=_linear,
            derivative=_ones,
            derivative_max=1.0,
            squashing=False,
        ),
    }
)
"""Every activation by name, with default parameters (`leaky_relu` slope 0.01, `elu` alpha 1)."""


def get_activation(activation: str | Activation, **params: float) -> Activation:
    """Return an activation by name (with optional parameters), or pass an `Activation` through.

    Args:
        activation: A name from `ACTIVATIONS`, or an `Activation`.
        **params: Parameters of the family, such as `slope` for `leaky_relu` or `alpha` for `elu`.

    Returns:
        The `Activation`.

    Raises:
        TypeError: If `activation` is neither a string nor an `Activation`, or a parameter is
            unknown.
        ValueError: If the name is unknown (the message lists the valid names) or a parameter
            is out of range.

    Example:
        ```py
        import numpy as np

        from vangrad import get_activation

        sigmoid = get_activation("sigmoid")
        print(sigmoid.derivative_max, sigmoid.function(np.array([-1e4, 0.0, 1e4])).tolist())
        #> 0.25 [0.0, 0.5, 1.0]
        print(get_activation("leaky_relu", slope=0.2).derivative(np.array([-1.0, 1.0])).tolist())
        #> [0.2, 1.0]
        print(round(get_activation("gelu").derivative_max, 4))
        #> 1.129
        ```
    """
    if isinstance(activation, Activation):
        return activation.with_params(**params)
    name = check_choice("activation", activation, ACTIVATIONS)
    return ACTIVATIONS[name].with_params(**params)
