"""Weight initialisers: how the entries of each weight matrix are drawn.

One registry, `INITIALIZERS`, maps a name to an `Initializer`. Each draws from a
`numpy.random.Generator` (so a seed reproduces it), knows the variance of the entries it draws,
and can draw a stack of independent matrices, shape `(trials, fan_in, fan_out)`, in one call.

The weight scale means one thing per initialiser: for `"normal"` it is the standard deviation
(and required); for every other initialiser it is a gain multiplying the weights (default 1),
so the variance becomes `gain ** 2` times the initialiser's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from vangrad._validation import (
    CELL_GATES,
    check_bool,
    check_cell,
    check_choice,
    check_finite_float,
    check_float_dtype,
    check_positive_float,
    check_positive_int,
    check_seed,
)

__all__ = ["INITIALIZERS", "RECURRENT_INITS", "Initializer", "get_initializer", "recurrent_params"]

Distribution = Literal["normal", "uniform", "orthogonal"]


@dataclass(frozen=True)
class Initializer:
    """A rule for drawing a `(fan_in, fan_out)` weight matrix.

    Attributes:
        name: The registry name, such as `"he_normal"`.
        description: One line with the rule and its variance formula.
        distribution: `"normal"`, `"uniform"` (on a symmetric interval) or `"orthogonal"`.
        base_variance: The variance of an entry at weight scale 1, as a function of
            `(fan_in, fan_out)`.
        scale_is_std: True for `"normal"`, whose weight scale is the standard deviation and must
            be given; otherwise the weight scale is an optional gain (default 1).
    """

    name: str
    description: str
    distribution: Distribution
    base_variance: Callable[[int, int], float] = field(repr=False)
    scale_is_std: bool = False

    def check_scale(self, weight_scale: object) -> float:
        """Return the weight scale to use: the given one if valid, else 1 (a gain).

        Raises:
            ValueError: If `weight_scale` is missing for `"normal"`, or is not finite and > 0.
            TypeError: If `weight_scale` is not a number.

        Example:
            ```py
            from vangrad import INITIALIZERS

            print(INITIALIZERS["he_normal"].check_scale(None))
            #> 1.0
            print(INITIALIZERS["normal"].check_scale(2))
            #> 2.0
            ```
        """
        if weight_scale is None:
            if self.scale_is_std:
                raise ValueError(
                    f"weight_scale is required for init={self.name!r}: it is the standard "
                    "deviation of the weights (a finite number > 0)"
                )
            return 1.0
        return check_positive_float("weight_scale", weight_scale)

    def variance(self, fan_in: int, fan_out: int, weight_scale: float | None = None) -> float:
        """Return the variance of one entry of a `(fan_in, fan_out)` matrix.

        Example:
            ```py
            from vangrad import INITIALIZERS

            print(INITIALIZERS["xavier_normal"].variance(100, 300))
            #> 0.005
            print(INITIALIZERS["normal"].variance(100, 300, weight_scale=0.5))
            #> 0.25
            ```
        """
        fan_in = check_positive_int("fan_in", fan_in)
        fan_out = check_positive_int("fan_out", fan_out)
        return self.check_scale(weight_scale) ** 2 * self.base_variance(fan_in, fan_out)

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        *,
        weight_scale: float | None = None,
        trials: int | None = None,
        dtype: type[np.floating] | str = np.float64,
    ) -> np.ndarray:
        """Draw one matrix of shape `(fan_in, fan_out)`, or a stack `(trials, fan_in, fan_out)`.

        Args:
            rng: The random generator, such as `np.random.default_rng(0)`.
            fan_in: Rows: the width of the layer's input; an integer >= 1.
            fan_out: Columns: the width of the layer's output; an integer >= 1.
            weight_scale: The standard deviation for `"normal"` (required), a gain otherwise.
            trials: If given, draw that many independent matrices, stacked on a leading axis.
            dtype: `float64` (default) or `float32`.

        Returns:
            The weights.

        Raises:
            TypeError: If `rng` is not a `numpy.random.Generator` or an argument has the wrong
                type.
            ValueError: If a size is below 1 or `weight_scale` is missing or not positive.

        Example:
            ```py
            import numpy as np

            from vangrad import get_initializer

            rng = np.random.default_rng(0)
            weights = get_initializer("orthogonal").sample(rng, 3, 2, trials=5, weight_scale=2.0)
            print(weights.shape, np.allclose(weights[0].T @ weights[0], 4 * np.eye(2)))
            #> (5, 3, 2) True
            ```
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                f"got {type(rng).__name__}"
            )
        fan_in = check_positive_int("fan_in", fan_in)
        fan_out = check_positive_int("fan_out", fan_out)
        scale = self.check_scale(weight_scale)
        dtype = check_float_dtype("dtype", dtype)
        stack = () if trials is None else (check_positive_int("trials", trials),)
        shape = (*stack, fan_in, fan_out)
        if self.distribution == "orthogonal":
            weights = _haar_orthogonal(rng, shape, dtype)
            weights *= scale
            return weights
        std = scale * math.sqrt(self.base_variance(fan_in, fan_out))
        if self.distribution == "normal":
            weights = rng.standard_normal(shape, dtype=dtype)
            weights *= std
            return weights
        # Uniform on [-a, a] has variance a^2 / 3.
        weights = rng.random(shape, dtype=dtype)
        weights *= 2.0 * math.sqrt(3.0) * std
        weights -= math.sqrt(3.0) * std
        return weights


def _haar_orthogonal(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """Draw Haar-distributed matrices with orthonormal columns (tall) or rows (wide).

    QR of a Gaussian matrix gives an orthonormal Q, but LAPACK's sign convention for R's diagonal
    biases Q; multiplying each column of Q by the sign of R's diagonal entry removes the bias
    (Mezzadri 2007), which makes Q Haar-distributed.
    """
    *stack, rows, cols = shape
    tall, short = max(rows, cols), min(rows, cols)
    gaussian = rng.standard_normal((*stack, tall, short), dtype=dtype)
    q, r = np.linalg.qr(gaussian)
    signs = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    signs[signs == 0] = 1
    q *= signs[..., np.newaxis, :]
    if rows < cols:
        q = np.swapaxes(q, -1, -2)
    return np.ascontiguousarray(q, dtype=dtype)


def _glorot(fan_in: int, fan_out: int) -> float:
    return 2.0 / (fan_in + fan_out)


def _he(fan_in: int, fan_out: int) -> float:
    return 2.0 / fan_in


def _lecun(fan_in: int, fan_out: int) -> float:
    return 1.0 / fan_in


def _unit(fan_in: int, fan_out: int) -> float:
    return 1.0


def _legacy(fan_in: int, fan_out: int) -> float:
    # Uniform on [-a, a] has variance a^2 / 3; a = 1 / sqrt(fan_in). Glorot and Bengio (2010)
    # show that it shrinks the back-propagated gradient about 3-fold per tanh layer.
    return 1.0 / (3.0 * fan_in)


def _orthogonal(fan_in: int, fan_out: int) -> float:
    # Orthonormal columns of length fan_in (or rows of length fan_out): squares sum to 1.
    return 1.0 / max(fan_in, fan_out)


INITIALIZERS: Mapping[str, Initializer] = MappingProxyType(
    {
        "normal": Initializer(
            name="normal",
            description="N(0, weight_scale^2): the weight scale is the standard deviation",
            distribution="normal",
            base_variance=_unit,
            scale_is_std=True,
        ),
        "xavier_normal": Initializer(
            name="xavier_normal",
            description="Glorot normal: Var = 2 / (fan_in + fan_out)",
            distribution="normal",
            base_variance=_glorot,
        ),
        "xavier_uniform": Initializer(
            name="xavier_uniform",
            description="Glorot uniform on [-a, a], a = sqrt(6 / (fan_in + fan_out)): "
            "Var = 2 / (fan_in + fan_out)",
            distribution="uniform",
            base_variance=_glorot,
        ),
        "he_normal": Initializer(
            name="he_normal",
            description="He normal: Var = 2 / fan_in",
            distribution="normal",
            base_variance=_he,
        ),
        "he_uniform": Initializer(
            name="he_uniform",
            description="He uniform on [-a, a], a = sqrt(6 / fan_in): Var = 2 / fan_in",
            distribution="uniform",
            base_variance=_he,
        ),
        "lecun_normal": Initializer(
            name="lecun_normal",
            description="LeCun normal: Var = 1 / fan_in",
            distribution="normal",
            base_variance=_lecun,
        ),
        "orthogonal": Initializer(
            name="orthogonal",
            description="Haar-random orthonormal columns (tall) or rows (wide): "
            "Var = 1 / max(fan_in, fan_out)",
            distribution="orthogonal",
            base_variance=_orthogonal,
        ),
        "legacy_uniform": Initializer(
            name="legacy_uniform",
            description="the 'standard' initialisation before Glorot and Bengio (2010), "
            "uniform on [-1/sqrt(fan_in), 1/sqrt(fan_in)]: Var = 1 / (3 fan_in)",
            distribution="uniform",
            base_variance=_legacy,
        ),
    }
)
"""Every initialiser by name."""


def get_initializer(init: str | Initializer) -> Initializer:
    """Return an initialiser by name, or pass an `Initializer` through.

    Args:
        init: A name from `INITIALIZERS`, or an `Initializer`.

    Returns:
        The `Initializer`.

    Raises:
        TypeError: If `init` is not a string or an `Initializer`.
        ValueError: If the name is unknown; the message lists the valid names.

    Example:
        ```py
        import numpy as np

        from vangrad import get_initializer

        he = get_initializer("he_normal")
        weights = he.sample(np.random.default_rng(0), 500, 500)
        print(he.variance(500, 500), round(float(weights.var()), 4))
        #> 0.004 0.004
        ```
    """
    if isinstance(init, Initializer):
        return init
    return INITIALIZERS[check_choice("init", init, INITIALIZERS)]


RECURRENT_INITS = ("identity", *INITIALIZERS)
"""What `recurrent_params` draws `weight_hh` from: `"identity"` or a name from `INITIALIZERS`."""


def recurrent_params(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    init_ih: str = "xavier_uniform",
    init_hh: str = "orthogonal",
    gain: float | None = None,
    input_gain: float | None = None,
    bias: bool = True,
    forget_bias: float = 0.0,
    trials: int | None = None,
    seed: int | np.random.Generator = 0,
    dtype: type[np.floating] | str = np.float64,
) -> dict[str, np.ndarray]:
    r"""Draw the parameters of one recurrent layer, by PyTorch's names and shapes.

    Every gate block (`G` of them: 4 for the LSTM, 3 for the GRU, 1 for the plain cells) is
    drawn on its own, as a matrix from the `H` (or `N`) inputs to that gate's `H` units:

    - `weight_hh` from `init_hh`: `"orthogonal"` (the default) gives each block a
      Haar-random orthogonal `(H, H)` matrix, all of whose singular values are 1 (Saxe et al.
      2014); `"identity"` gives each block the identity, as in the IRNN of Le et al. (2015),
      a ReLU RNN with $W_{hh} = I$ and zero biases; any name from `INITIALIZERS` draws each
      block from it, such as `"xavier_normal"` (Glorot: variance $2 / (H + H) = 1 / H$).
    - `weight_ih` from `init_ih` (any name from `INITIALIZERS`; Glorot's uniform rule by
      default), each block a `(H, N)` matrix with `fan_in = N`, `fan_out = H`.

    Args:
        cell: One of `CELLS`.
        input_size: `N`, the features of `x_t`.
        hidden_size: `H`, the units of `h_t`.
        init_ih: The initialiser of `weight_ih` (a name from `INITIALIZERS`).
        init_hh: The initialiser of `weight_hh` (one of `RECURRENT_INITS`).
        gain: Multiplies `weight_hh` (the weight scale of `init_hh`: the standard deviation for
            `"normal"`, where it is required; a gain, default 1, otherwise).
        input_gain: The same for `weight_ih` and `init_ih`.
        bias: Return `bias_ih` and `bias_hh` (zeros, but for the forget bias) or no biases.
        forget_bias: The LSTM only: the bias of the forget gate. PyTorch adds `bias_ih` and
            `bias_hh`, so it is placed in one of them, the f block (rows `H` to `2H`) of
            `bias_ih`, and the gate's total bias is exactly `forget_bias` (placed in both it
            would count twice).
        trials: If given, draw that many independent layers, stacked on a leading axis.
        seed: An integer >= 0 or a `numpy.random.Generator`; `weight_ih` is drawn first.
        dtype: `float64` (default) or `float32`.

    Returns:
        The `params` mapping `backprop_through_time` takes.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: For an unknown cell or initialiser, a size below 1, a forget bias for a
            cell other than the LSTM or without biases.

    Example:
        ```py
        import numpy as np

        from vangrad import recurrent_params

        params = recurrent_params("lstm", 3, 8, forget_bias=1.0, seed=0)
        print({name: value.shape for name, value in params.items()})
        #> {'weight_ih': (32, 3), 'weight_hh': (32, 8), 'bias_ih': (32,), 'bias_hh': (32,)}
        f_block = params["weight_hh"][8:16]  # the forget gate's recurrent weights
        print(np.allclose(f_block @ f_block.T, np.eye(8)), params["bias_ih"][8:16].tolist())
        #> True [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        ```
    """
    cell = check_cell(cell)
    n = check_positive_int("input_size", input_size)
    h = check_positive_int("hidden_size", hidden_size)
    ih = INITIALIZERS[check_choice("init_ih", init_ih, INITIALIZERS)]
    init_hh = check_choice("init_hh", init_hh, RECURRENT_INITS)
    bias = check_bool("bias", bias)
    forget_bias = check_finite_float("forget_bias", forget_bias)
    if forget_bias != 0 and cell != "lstm":
        raise ValueError(f"forget_bias is the LSTM's forget-gate bias, but cell={cell!r} has none")
    if forget_bias != 0 and not bias:
        raise ValueError("forget_bias needs the biases: it goes into bias_ih, and bias=False")

    def scale(name: str, value: object, init: str) -> float:
        """The weight scale: required for "normal" (the standard deviation), else a gain."""
        if value is not None:
            return check_positive_float(name, value)
        if init == "normal":
            raise ValueError(
                f"{name} is required with init {init!r}: it is the standard deviation of the "
                "weights (a finite number > 0)"
            )
        return 1.0

    gain_hh = scale("gain", gain, init_hh)
    gain_ih = scale("input_gain", input_gain, ih.name)
    dtype = check_float_dtype("dtype", dtype)
    rng = check_seed(seed)
    stack = () if trials is None else (check_positive_int("trials", trials),)
    gates = CELL_GATES[cell]
    count = gates * (stack[0] if stack else 1)

    def blocks(matrices: np.ndarray) -> np.ndarray:
        """`count` matrices `(fan_in, fan_out)` as PyTorch's `(*stack, G*H, fan_in)`."""
        out_in = np.swapaxes(matrices, -1, -2)  # PyTorch stores (out, in)
        return np.ascontiguousarray(out_in.reshape(*stack, gates * h, out_in.shape[-1]))

    params = {
        "weight_ih": blocks(ih.sample(rng, n, h, weight_scale=gain_ih, trials=count, dtype=dtype))
    }
    if init_hh == "identity":
        identity = np.broadcast_to(gain_hh * np.eye(h, dtype=dtype), (count, h, h))
        params["weight_hh"] = blocks(identity)
    else:
        hh = INITIALIZERS[init_hh]
        params["weight_hh"] = blocks(
            hh.sample(rng, h, h, weight_scale=gain_hh, trials=count, dtype=dtype)
        )
    if bias:
        params["bias_ih"] = np.zeros((*stack, gates * h), dtype=dtype)
        params["bias_hh"] = np.zeros((*stack, gates * h), dtype=dtype)
        params["bias_ih"][..., h : 2 * h] = forget_bias  # the f block (gates i, f, g, o)
    return params
