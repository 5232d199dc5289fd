r"""Mean-field theory: predict, before running anything, how fast a wide network's gradient decays.

For a layer $z_l = h_{l-1} W_l + b_l$ with weights $W_{ij} \sim \mathcal{N}(0, \sigma_w^2 / n)$ and
biases $b_i \sim \mathcal{N}(0, \sigma_b^2)$, the pre-activations of a wide network are Gaussian
with a variance $q_l$ that follows the variance map (Poole et al. 2016)

$$
q_l = \sigma_w^2 \, \mathbb{E}_z\bigl[\phi(\sqrt{q_{l-1}}\, z)^2\bigr] + \sigma_b^2 ,
\qquad z \sim \mathcal{N}(0, 1) ,
$$

and the mean squared gradient is multiplied, from layer $l$ down to layer $l - 1$, by

$$
\chi(q_l) = \sigma_w^2 \, \mathbb{E}_z\bigl[\phi'(\sqrt{q_l}\, z)^2\bigr]
$$

(Schoenholz et al. 2017). At the map's fixed point $q^*$ this is $\chi_1$: below 1 the gradient
vanishes (the ordered phase), above 1 it explodes (the chaotic phase), at 1 it keeps its size
(the edge of chaos). The expectations are computed by quadrature; ReLU, leaky ReLU and the
identity use their exact closed forms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss
from numpy.typing import ArrayLike

from vangrad._validation import (
    check_bool,
    check_choice,
    check_finite_array,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from vangrad.activations import Activation, get_activation
from vangrad.engine import loss_upstream, run_network
from vangrad.flow import GradientFlow
from vangrad.initializers import Initializer, get_initializer
from vangrad.network_checks import check_activation
from vangrad.simulation import simulate

__all__ = [
    "PhaseDiagram",
    "chi",
    "chi_1",
    "critical_line",
    "critical_sigma_w2",
    "depth_scale",
    "fixed_point",
    "gaussian_expectation",
    "init_sigma_w2",
    "jacobian_singular_values",
    "phase_diagram",
    "predicted_jacobian_variance",
    "predicted_log10_grad_norms",
    "simulate_mean_field",
    "variance_map",
    "variance_sequence",
]

# Gauss-Hermite with 101 nodes integrates E_z[f(sqrt(q) z)] to about 1e-12 for tanh and the
# sigmoid while sqrt(q) <= 1; beyond that the integrand's features (width ~ 1 / sqrt(q) in z)
# fall between its nodes, so larger q use a composite Gauss-Legendre rule whose panels shrink
# with 1 / sqrt(q).
_HERMITE_NODES = 101
_HERMITE_MAX_Q = 1.0
_LEGENDRE_NODES = 10
_Z_RANGE = 12.0  # P(|z| > 12) ~ 4e-33: nothing beyond it shows in float64
# Activations whose expectations have exact closed forms (see `_closed_form`).
_CLOSED_FORMS = {"relu", "leaky_relu", "linear"}
# Piecewise definitions: quadrature panels must meet at the kink (z = 0), never straddle it.
_KINKED = {"elu"}


@functools.cache
def _hermite() -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = hermegauss(_HERMITE_NODES)
    return nodes, weights / weights.sum()  # probabilists' weights sum to sqrt(2 pi)


@functools.cache
def _legendre(panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes on [-12, 12] with the standard normal density folded in.

    `panels` is even, so z = 0 is a panel edge: a kink at 0 is integrated exactly piecewise.
    """
    nodes, weights = leggauss(_LEGENDRE_NODES)
    edges = np.linspace(-_Z_RANGE, _Z_RANGE, panels + 1)
    half = 0.5 * (edges[1] - edges[0])
    z = (0.5 * (edges[:-1] + edges[1:])[:, np.newaxis] + half * nodes).ravel()
    w = np.tile(half * weights, panels) * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z, w


def _expect(function: object, q: np.ndarray, *, kinked: bool = False) -> np.ndarray:
    """E_z[function(sqrt(q) z)] for an array `q >= 0` (no validation)."""
    out = np.empty(q.shape)
    # At q = 0 the expectation is function(0) exactly. Quadrature would give function(0) times
    # the sum of its weights, which is 1 only to rounding, and to which rounding depends on the
    # BLAS kernel: tanh's chi_1 at the critical point came out 1 or 1 - 1e-16 by machine.
    zero = q == 0
    out[zero] = function(np.zeros(int(zero.sum())))
    small = (q <= _HERMITE_MAX_Q) & (not kinked) & ~zero
    with np.errstate(under="ignore"):
        if small.any():
            z, w = _hermite()
            out[small] = function(np.sqrt(q[small])[..., np.newaxis] * z) @ w
        if (~small & ~zero).any():
            large = q[~small & ~zero]
            # About 8 panels per unit of sqrt(q) z: each panel spans < 1/8 of the feature size.
            panels = 2 * math.ceil(12 * max(1.0, math.sqrt(float(large.max()))))
            z, w = _legendre(panels)
            out[~small & ~zero] = function(np.sqrt(large)[..., np.newaxis] * z) @ w
    return out


def _closed_form(act: Activation) -> tuple[float, float] | None:
    """`(E[phi(sqrt(q) z)^2] / q, E[phi'(sqrt(q) z)^2])` for piecewise-linear activations, q > 0."""
    if act.name == "linear":
        return 1.0, 1.0
    if act.name == "relu":
        # Half the mass is cut off: E[relu(x)^2] = q / 2 and E[1{x > 0}] = P(z > 0) = 1 / 2.
        return 0.5, 0.5
    if act.name == "leaky_relu":
        slope = act.params["slope"]
        both = 0.5 * (1.0 + slope * slope)
        return both, both
    return None


def _check_q(name: str, value: ArrayLike) -> np.ndarray:
    q = check_finite_array(name, value, ndim=range(33)).astype(np.float64)
    if np.any(q < 0):
        raise ValueError(f"{name} must be >= 0 (it is a variance), got a minimum of {q.min()!r}")
    return q


def _check_params(sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    w = check_finite_array("sigma_w2", sigma_w2, ndim=range(33)).astype(np.float64)
    b = check_finite_array("sigma_b2", sigma_b2, ndim=range(33)).astype(np.float64)
    if np.any(w <= 0):
        raise ValueError(f"sigma_w2 must be > 0 (a weight variance), got {w.min()!r}")
    if np.any(b < 0):
        raise ValueError(f"sigma_b2 must be >= 0 (a bias variance), got {b.min()!r}")
    return np.broadcast_arrays(w, b)


def gaussian_expectation(
    function: object, q: ArrayLike, *, activation_kinked: bool = False
) -> np.ndarray:
    r"""Return $\mathbb{E}_z[f(\sqrt{q}\, z)]$, $z \sim \mathcal{N}(0, 1)$, for each `q`.

    Gauss-Hermite quadrature (101 nodes) for $q \le 1$; a composite Gauss-Legendre rule on
    $|z| \le 12$ whose panels shrink as $1 / \sqrt{q}$ for larger $q$, where a fixed set of
    Hermite nodes would step over the integrand's features.

    Args:
        function: A vectorised function of a numpy array, such as `np.tanh`.
        q: Variances, `>= 0`; any shape.
        activation_kinked: True for a function with a kink at 0: the rule then keeps 0 on a
            panel edge and never uses the Hermite nodes, which would straddle it.

    Returns:
        An array shaped like `q`.

    Example:
        ```py
        import numpy as np

        from vangrad.theory import gaussian_expectation

        # E[x^2] = q and E[tanh(x)^2] < q for x ~ N(0, q).
        print(gaussian_expectation(np.square, [0.5, 4.0]).round(12).tolist())
        #> [0.5, 4.0]
        print(gaussian_expectation(lambda x: np.tanh(x) ** 2, [1.0]).round(4).tolist())
        #> [0.3943]
        ```
    """
    if not callable(function):
        raise TypeError(f"function must be callable, got {type(function).__name__}")
    q_array = _check_q("q", q)
    return _expect(function, q_array, kinked=check_bool("activation_kinked", activation_kinked))


def _mean_square(act: Activation, q: np.ndarray, *, derivative: bool = False) -> np.ndarray:
    """`E[phi(sqrt(q) z)^2]`, or `E[phi'(sqrt(q) z)^2]`, with closed forms where they exist."""
    closed = _closed_form(act)
    if closed is not None:
        return np.full(q.shape, closed[1]) if derivative else closed[0] * q
    function = act.derivative if derivative else act.function
    return _expect(lambda x: np.square(function(x)), q, kinked=act.name in _KINKED)


def variance_map(
    q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike = 0.0, activation: str = "tanh"
) -> np.ndarray:
    r"""Return the next layer's pre-activation variance from the previous one's, `q`.

    That is $\sigma_w^2 \mathbb{E}[\phi(\sqrt{q} z)^2] + \sigma_b^2$, $z \sim \mathcal{N}(0, 1)$.

    Args:
        q: The previous layer's pre-activation variance (`>= 0`).
        sigma_w2: The weight variance times the fan-in, `n Var(W)`; `> 0`.
        sigma_b2: The bias variance; `>= 0`.
        activation: A name from `ACTIVATIONS` or an `Activation`.

    Returns:
        The broadcast of the arguments.

    Example:
        ```py
        from vangrad.theory import variance_map

        # ReLU halves E[x^2]; with sigma_w^2 = 2 (He) the variance is kept exactly.
        print(variance_map([1.0, 3.0], 2.0, 0.0, "relu").tolist())
        #> [1.0, 3.0]
        ```
    """
    act = check_activation(activation)
    w, b = _check_params(sigma_w2, sigma_b2)
    q_array = _check_q("q", q)
    q_array, w, b = np.broadcast_arrays(q_array, w, b)
    return w * _mean_square(act, q_array) + b


def chi(
    q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike = 0.0, activation: str = "tanh"
) -> np.ndarray:
    r"""Return $\sigma_w^2 \mathbb{E}[\phi'(\sqrt{q} z)^2]$, the mean squared gradient's factor.

    `sigma_b2` does not enter the factor itself, only the variance `q`; it is accepted so that
    the call reads like the others.

    Example:
        ```py
        from vangrad.theory import chi

        # tanh'(0) = 1: at tiny variance tanh is the identity and chi = sigma_w^2.
        print(chi([1e-12, 1.0], 1.0).round(4).tolist())
        #> [1.0, 0.4644]
        ```
    """
    act = check_activation(activation)
    w, _ = _check_params(sigma_w2, sigma_b2)
    q_array = _check_q("q", q)
    q_array, w = np.broadcast_arrays(q_array, w)
    return w * _mean_square(act, q_array, derivative=True)


def fixed_point(
    sigma_w2: ArrayLike, sigma_b2: ArrayLike = 0.0, activation: str = "tanh"
) -> np.ndarray:
    r"""Return the stable fixed point $q^*$ of the variance map (inf where the variance diverges).

    Bounded activations (tanh, sigmoid) are solved by bisection on $q_\text{next}(q) - q$ over
    $[0, \sigma_w^2 \sup \phi^2 + \sigma_b^2]$, where it is positive then negative; ReLU, leaky
    ReLU and the identity in closed form ($\sigma_b^2 / (1 - \sigma_w^2 c)$, with $c$ the mean
    square of the slope; inf when $\sigma_w^2 c \ge 1$ and the variance grows without bound; nan
    when $\sigma_w^2 c = 1$ without biases, where every variance is kept as it starts). Other
    activations raise a `ValueError`: follow them layer by layer with `variance_sequence` and
    `chi`.

    Raises:
        ValueError: For another activation, or an out-of-range variance.

    Example:
        ```py
        from vangrad.theory import fixed_point

        # tanh without biases: q* = 0 up to sigma_w^2 = 1, then a nonzero fixed point.
        print(fixed_point([0.5, 1.0, 2.0]).round(4).tolist())
        #> [0.0, 0.0, 0.618]
        print(fixed_point(1.0, 0.0, "sigmoid").round(4).tolist())
        #> 0.2647
        ```
    """
    act = check_activation(activation)
    w, b = _check_params(sigma_w2, sigma_b2)
    closed = _closed_form(act)
    if closed is not None:
        gain = w * closed[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            q_star = np.where(gain < 1, b / (1 - gain), np.inf)
        return np.where((gain == 1) & (b == 0), np.nan, q_star)
    if act.squashing:
        # sup phi^2 of a bounded activation: its value far out on either side.
        bound = float(np.max(np.square(act.function(np.array([-50.0, 50.0])))))
        low = np.zeros(w.shape)
        high = w * bound + b
        for _ in range(200):
            middle = 0.5 * (low + high)
            positive = w * _mean_square(act, middle) + b - middle > 0
            low = np.where(positive, middle, low)
            high = np.where(positive, high, middle)
            if np.all(high - low <= 1e-15 * np.maximum(high, 1e-300)):
                break
        # Without biases, an activation with phi(0) = 0 keeps q = 0 fixed, and that fixed point
        # is stable while the map's slope there, sigma_w^2 phi'(0)^2, is at most 1. Where the
        # bisection has also closed in on it, q* = 0 exactly: bisection only approaches 0, to
        # where rounding decides the sign (about 1e-16), which left tanh's chi_1 at
        # sigma_w^2 = 1 at 1 or at 1 - 1e-16 depending on the machine. (An activation with
        # another stable fixed point away from 0 keeps the one bisection found.)
        zero = np.zeros(1)
        at_origin = (b == 0) & (float(act.function(zero)[0]) == 0.0) & (high <= 1e-8)
        at_origin &= w * float(act.derivative(zero)[0]) ** 2 <= 1
        return np.where(at_origin, 0.0, 0.5 * (low + high))
    raise ValueError(
        f"fixed_point supports bounded activations (tanh, sigmoid) and {sorted(_CLOSED_FORMS)}, "
        f"got {act.name!r}: follow its variances with variance_sequence and chi instead"
    )


def chi_1(sigma_w2: ArrayLike, sigma_b2: ArrayLike = 0.0, activation: str = "tanh") -> np.ndarray:
    r"""Return $\chi_1 = \sigma_w^2 \mathbb{E}[\phi'(\sqrt{q^*} z)^2]$, the factor at $q^*$.

    $\chi_1 < 1$: the mean squared gradient shrinks by $\chi_1$ per layer (ordered phase);
    $\chi_1 > 1$: it grows (chaotic phase). The gradient norm changes by $\sqrt{\chi_1}$ per
    layer. ReLU gives $\sigma_w^2 / 2$ and the identity $\sigma_w^2$ at any variance.

    Raises:
        ValueError: For an activation that `fixed_point` does not support (not tanh, sigmoid,
            ReLU, leaky ReLU or the identity), or an out-of-range variance.

    Example:
        ```py
        from vangrad.theory import chi_1

        print(chi_1(2.0, 0.0, "relu").tolist(), chi_1(0.5, 0.0, "linear").tolist())
        #> 1.0 0.5
        # The sigmoid at sigma_w^2 = 1: the mean square shrinks ~18-fold per layer.
        print(round(float(chi_1(1.0, 0.0, "sigmoid")), 4))
        #> 0.0557
        ```
    """
    act = check_activation(activation)
    w, b = _check_params(sigma_w2, sigma_b2)
    closed = _closed_form(act)
    if closed is not None:
        return w * closed[1]
    q_star = fixed_point(w, b, act)
    return w * _mean_square(act, q_star, derivative=True)


def depth_scale(chi_value: ArrayLike) -> np.ndarray:
    r"""Return the depth scale $\xi = -1 / \ln \chi_1$, in layers.

    Over $\xi$ layers the mean squared gradient changes by a factor e.

    Positive in the ordered phase (the gradient vanishes over about $\xi$ layers), negative in
    the chaotic phase (it grows by $e$ every $|\xi|$ layers), infinite at $\chi_1 = 1$.

    Example:
        ```py
        import math

        from vangrad.theory import depth_scale

        print(depth_scale([math.exp(-0.1), 1.0, math.exp(0.5)]).round(6).tolist())
        #> [10.0, inf, -2.0]
        ```
    """
    value = check_finite_array("chi_value", chi_value, ndim=range(33)).astype(np.float64)
    if np.any(value <= 0):
        raise ValueError("chi_value must be > 0 (a ratio of mean squares)")
    log_value = np.log(value)
    with np.errstate(divide="ignore"):
        # ln(1) = +0.0 would give -inf; the depth scale at criticality is +inf.
        return np.where(log_value == 0, np.inf, -1.0 / log_value)


def critical_line(q_star: ArrayLike, activation: str = "tanh") -> tuple[np.ndarray, np.ndarray]:
    r"""Return the points $(\sigma_w^2, \sigma_b^2)$ where $\chi_1 = 1$, parametrised by $q^*$.

    On the critical line both the fixed-point equation and $\chi_1 = 1$ hold, which gives the
    line in closed form given the expectations at $q^*$:
    $\sigma_w^2 = 1 / \mathbb{E}[\phi'(\sqrt{q^*} z)^2]$, then
    $\sigma_b^2 = q^* - \sigma_w^2 \mathbb{E}[\phi(\sqrt{q^*} z)^2]$. A negative $\sigma_b^2$
    means no network with biases reaches that $q^*$ at criticality.

    Example:
        ```py
        from vangrad.theory import chi_1, critical_line

        w2, b2 = critical_line([0.1, 0.5])
        print(w2.round(3).tolist(), b2.round(4).tolist())
        #> [1.178, 1.688] [0.0008, 0.038]
        print(chi_1(w2[1], b2[1]).round(9).tolist())
        #> 1.0
        ```
    """
    act = check_activation(activation)
    q = _check_q("q_star", q_star)
    value = _mean_square(act, q)
    slope = _mean_square(act, q, derivative=True)
    with np.errstate(divide="ignore"):
        w = 1.0 / slope
    return w, q - w * value


def critical_sigma_w2(sigma_b2: ArrayLike = 0.0, activation: str = "tanh") -> np.ndarray:
    r"""Return the $\sigma_w^2$ at which $\chi_1 = 1$ for each bias variance `sigma_b2`.

    Inverts `critical_line` by bisection on $q^*$ in $[0, 10^4]$, where its $\sigma_b^2$ rises
    with $q^*$ for tanh and the sigmoid.

    Raises:
        ValueError: If a `sigma_b2` is beyond the reach of $q^* \le 10^4$.

    Example:
        ```py
        from vangrad.theory import critical_sigma_w2

        print(critical_sigma_w2([0.0, 0.05]).round(4).tolist())
        #> [1.0, 1.761]
        # Without biases the sigmoid needs a weight variance near 100 to reach the edge of chaos.
        print(round(float(critical_sigma_w2(0.0, "sigmoid")), 1))
        #> 103.0
        ```
    """
    act = check_activation(activation)
    target = _check_q("sigma_b2", sigma_b2)
    low = np.zeros(target.shape)
    high = np.full(target.shape, 1e4)
    if np.any(critical_line(high, act)[1] < target):
        raise ValueError(f"sigma_b2 too large for the critical line of {act.name}: {target.max()}")
    for _ in range(100):
        middle = 0.5 * (low + high)
        below = critical_line(middle, act)[1] < target
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
    return critical_line(0.5 * (low + high), act)[0]


def variance_sequence(
    depth: int,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    activation: str = "tanh",
    *,
    input_second_moment: float = 1.0,
) -> np.ndarray:
    r"""Return the predicted pre-activation variances $q_1, \dots, q_L$ of a network's layers.

    $q_1 = \sigma_w^2 \operatorname{mean}(x^2) + \sigma_b^2$ from the input's mean square (1 for
    the standard normal inputs that `simulate` draws); then the variance map, layer by layer.

    Example:
        ```py
        from vangrad.theory import variance_sequence

        print(variance_sequence(4, 1.0).round(3).tolist())
        #> [1.0, 0.394, 0.236, 0.167]
        ```
    """
    depth = check_positive_int("depth", depth)
    act = check_activation(activation)
    w = check_positive_float("sigma_w2", sigma_w2)
    b = check_nonnegative_float("sigma_b2", sigma_b2)
    moment = check_nonnegative_float("input_second_moment", input_second_moment)
    q = np.empty(depth)
    q[0] = w * moment + b
    for layer in range(1, depth):  # a loop over layers: each variance needs the one before
        q[layer] = w * _mean_square(act, q[layer - 1 : layer])[0] + b
    return q


def predicted_log10_grad_norms(
    depth: int,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    activation: str = "tanh",
    *,
    input_second_moment: float = 1.0,
) -> np.ndarray:
    r"""Predict $\log_{10} \lVert g_l \rVert$ for $l = 0, \dots, L$, relative to the output.

    Here $g_l = \partial L / \partial h_l$, and the value at index $L$ is 0. Going down through
    layer $l$ the mean squared gradient is multiplied by $\chi(q_l)$ at that layer's own
    variance (from `variance_sequence`, so the transient from the input's variance to $q^*$ is
    included); with equal widths the norm changes by $\sqrt{\chi(q_l)}$. Comparable to
    `GradientFlow.log10_grad_norms - log10_grad_norms[..., -1:]` of a wide network.

    Example:
        ```py
        from vangrad.theory import predicted_log10_grad_norms

        # 10 ReLU layers at He's variance keep the norm; LeCun's halves the mean square per layer.
        print(predicted_log10_grad_norms(10, 2.0, 0.0, "relu")[0].round(6).tolist())
        #> 0.0
        print(predicted_log10_grad_norms(10, 1.0, 0.0, "relu")[0].round(4).tolist())
        #> -1.5051
        ```
    """
    q = variance_sequence(
        depth, sigma_w2, sigma_b2, activation, input_second_moment=input_second_moment
    )
    act = get_activation(activation)
    step = 0.5 * np.log10(sigma_w2 * _mean_square(act, q, derivative=True))
    # Index l holds the sum of the steps of layers l+1..L.
    return np.append(np.cumsum(step[::-1])[::-1], 0.0)


def init_sigma_w2(
    init: str | Initializer, width: int, *, weight_scale: float | None = None
) -> float:
    r"""Return $\sigma_w^2 = n \operatorname{Var}(W)$ for square layers of an initialiser.

    The layers are `width` by `width`.

    The theory's $\sigma_w^2$ is the weight variance times the fan-in: Glorot (`xavier_*`),
    LeCun and orthogonal give 1, He gives 2, and the weight scale multiplies it by its square
    (for `"normal"`, whose scale is the standard deviation, it is $n\, \text{scale}^2$).

    Example:
        ```py
        from vangrad.theory import init_sigma_w2

        for name in ("xavier_normal", "lecun_normal", "he_normal", "orthogonal"):
            print(name, round(init_sigma_w2(name, 512), 12))
            #> xavier_normal 1.0
            #> lecun_normal 1.0
            #> he_normal 2.0
            #> orthogonal 1.0
        print(round(init_sigma_w2("normal", 100, weight_scale=0.2), 12))
        #> 4.0
        ```
    """
    initializer = get_initializer(init)
    width = check_positive_int("width", width)
    return width * initializer.variance(width, width, weight_scale)


def simulate_mean_field(
    depth: int,
    width: int,
    *,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    activation: str | Activation,
    batch_size: int,
    trials: int = 1,
    seed: int | np.random.Generator = 0,
    loss: str = "random",
    dtype: str = "float64",
) -> GradientFlow:
    r"""Measure the gradients of random networks in the theory's own setting, in one engine call.

    Weights $\mathcal{N}(0, \sigma_w^2 / n)$, biases $\mathcal{N}(0, \sigma_b^2)$, standard
    normal inputs, and by default (`loss="random"`) a standard normal upstream gradient drawn
    independently of the network and scaled to the norm of the ones (see
    [`loss_upstream`][vangrad.engine.loss_upstream]): the theory assumes that the
    back-propagated signal is independent of the forward pass. `loss="sum"` uses the engine's
    default loss, the sum of the outputs, whose upstream of ones is not zero-mean; with ReLU
    (whose derivative, a step, is not even) that correlates the gradient with the weights and
    the measurement departs from $\chi_1$.

    This is [`simulate`][vangrad.simulate] with `init="normal"`, the weight scale
    $\sqrt{\sigma_w^2 / n}$ and `bias_std` $= \sigma_b$, in the theory's variables.

    Args:
        depth: The number of layers; an integer >= 1.
        width: The units per layer (and input features); an integer >= 1.
        sigma_w2: `n Var(W)`; `> 0`.
        sigma_b2: The bias variance; `>= 0` (0: no biases).
        activation: A name from `ACTIVATIONS` or an `Activation`.
        batch_size: The number of inputs; an integer >= 1.
        trials: The number of independent networks, run as one stack.
        seed: An integer >= 0, or a `numpy.random.Generator`.
        loss: `"random"` (default) or `"sum"`.
        dtype: `"float64"` (default) or `"float32"` (half the memory and time).

    Returns:
        The engine's `GradientFlow`, norms shaped `(trials, depth + 1)`, or `(depth + 1,)`
        for a single trial, as from `simulate`.

    Example:
        ```py
        import numpy as np

        from vangrad.theory import chi_1, simulate_mean_field

        setup = {"activation": "relu", "batch_size": 4, "trials": 2}
        flow = simulate_mean_field(20, 256, sigma_w2=1.0, **setup)
        # ln of the squared norm falls by -ln(chi_1) per layer going down: fit a line.
        ln_squares = 2 * np.log(10) * flow.log10_grad_norms.mean(axis=0)
        slope = np.polyfit(np.arange(21), ln_squares, 1)[0]
        print(round(float(np.exp(-slope)), 2), float(chi_1(1.0, 0.0, "relu")))
        #> 0.5 0.5
        ```
    """
    width = check_positive_int("width", width)
    w = check_positive_float("sigma_w2", sigma_w2)
    b = check_nonnegative_float("sigma_b2", sigma_b2)
    return simulate(
        depth,
        width,
        activation=activation,
        init="normal",
        weight_scale=math.sqrt(w / width),
        bias_std=math.sqrt(b),
        batch_size=batch_size,
        trials=trials,
        seed=seed,
        dtype=dtype,
        loss=loss,
    )


@dataclass(frozen=True, eq=False)
class PhaseDiagram:
    r"""The measured gradient ratio of networks over a grid of $(\sigma_w^2, \sigma_b^2)$.

    Attributes:
        sigma_w2: The weight variances `n Var(W)`, shape `(W,)`.
        sigma_b2: The bias variances, shape `(B,)`.
        log10_ratio: The median over the networks of
            $\log_{10}(\lVert g_0 \rVert / \lVert g_L \rVert)$,
            shape `(W, B)`: below 0 the gradient vanished on its way to the input.
        depth: The number of layers.
        width: The units per layer.
        networks: How many networks the one engine call ran.
    """

    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    log10_ratio: np.ndarray
    depth: int
    width: int
    networks: int


def phase_diagram(
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    *,
    depth: int,
    width: int,
    batch_size: int,
    trials: int = 1,
    activation: str | Activation = "tanh",
    seed: int | np.random.Generator = 0,
) -> PhaseDiagram:
    r"""Measure the input gradient relative to the output over a grid of weight and bias variances.

    Every grid point runs `trials` networks, and the whole grid runs in ONE engine call: the
    weights are drawn once, $\mathcal{N}(0, 1 / n)$, and each grid point multiplies them by its
    own $\sigma_w$ without materialising the product; the biases are drawn once from
    $\mathcal{N}(0, 1)$ and scaled by $\sigma_b$. Neighbouring grid points therefore share their
    random numbers, which keeps the map smooth (common random numbers). The error signal at the
    output is standard normal, drawn independently of the networks (see `simulate_mean_field`).

    Args:
        sigma_w2: The weight variances, a 1-D array of values `> 0`.
        sigma_b2: The bias variances, a 1-D array of values `>= 0`.
        depth: The number of layers.
        width: The units per layer.
        batch_size: The number of inputs.
        trials: The networks per grid point.
        activation: A name from `ACTIVATIONS` or an `Activation`.
        seed: An integer >= 0, or a `numpy.random.Generator`.

    Returns:
        A `PhaseDiagram`.

    Example:
        ```py
        from vangrad.theory import phase_diagram

        grid = phase_diagram([0.5, 1.0, 4.0], [0.0, 0.5], depth=20, width=32, batch_size=4)
        print(grid.log10_ratio.shape, grid.networks)
        #> (3, 2) 6
        print((grid.log10_ratio[:, 0] > 0).tolist())
        #> [False, False, True]
        ```
    """
    w = check_finite_array("sigma_w2", sigma_w2, ndim=(1,)).astype(np.float64)
    b = check_finite_array("sigma_b2", sigma_b2, ndim=(1,)).astype(np.float64)
    if np.any(w <= 0):
        raise ValueError(f"sigma_w2 must be > 0 (a weight variance), got {w.min()!r}")
    if np.any(b < 0):
        raise ValueError(f"sigma_b2 must be >= 0 (a bias variance), got {b.min()!r}")
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    batch_size = check_positive_int("batch_size", batch_size)
    trials = check_positive_int("trials", trials)
    act = check_activation(activation)
    rng = check_seed(seed)
    x = rng.standard_normal((batch_size, width))
    weights = rng.standard_normal((depth, trials, width, width))
    weights /= math.sqrt(width)
    base_biases = rng.standard_normal((depth, trials, 1, width))
    stack = (w.size, b.size, trials)
    # Gain per network, shape (W, B, 1): the engine broadcasts it against the weights' (trials,).
    gain = np.broadcast_to(np.sqrt(w)[:, np.newaxis, np.newaxis], (w.size, b.size, 1))
    # Biases per layer, shape (B, trials, 1, width): they broadcast over the W axis.
    scale = np.sqrt(b)[:, np.newaxis, np.newaxis, np.newaxis]
    biases = [scale * layer_biases for layer_biases in base_biases]
    # The random loss, one draw per network, shared by every point of the grid.
    upstream = np.broadcast_to(
        loss_upstream("random", (trials, batch_size, width), rng), (*stack, batch_size, width)
    )
    flow = run_network(
        x,
        list(weights),
        act,
        biases=biases,
        upstream=upstream,
        gain=np.ascontiguousarray(gain),
        measure_weight_grads=False,
    )
    ratio = flow.log10_grad_norms[..., 0] - flow.log10_grad_norms[..., -1]
    return PhaseDiagram(
        sigma_w2=w,
        sigma_b2=b,
        log10_ratio=np.median(ratio, axis=-1),
        depth=depth,
        width=width,
        networks=w.size * b.size * trials,
    )


def jacobian_singular_values(
    depths: Sequence[int],
    width: int,
    *,
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    weight_distribution: str = "gaussian",
    trials: int = 1,
    seed: int | np.random.Generator = 0,
) -> dict[int, np.ndarray]:
    r"""Return the singular values of the input-output Jacobian $\partial h_L / \partial x$.

    One set per depth $L$ in `depths`.

    One network of `max(depths)` layers per trial (its first `L` layers give the depth-`L`
    Jacobian), all trials as one stack. `weight_distribution="gaussian"` draws
    $\mathcal{N}(0, \sigma_w^2 / n)$; `"orthogonal"` draws Haar-random orthogonal matrices times
    $\sigma_w$. The one input per trial is drawn so that its mean square puts the first layer at
    the fixed point, $q_1 = q^*$ (mean square 1 where $q^*$ is not finite, as for ReLU at
    $\sigma_w^2 = 2$).

    Returns:
        Depth -> singular values, shape `(trials, width)`, largest first.

    Example:
        ```py
        from vangrad.theory import jacobian_singular_values

        spectra = jacobian_singular_values(
            [1, 4], 16, activation="linear", sigma_w2=1.0, weight_distribution="orthogonal"
        )
        # A product of orthogonal matrices is orthogonal: every singular value is 1.
        print(spectra[4].shape, spectra[4].round(9).min(), spectra[4].round(9).max())
        #> (1, 16) 1.0 1.0
        ```
    """
    if isinstance(depths, str) or not isinstance(depths, Sequence) or not depths:
        raise TypeError(f"depths must be a non-empty sequence of integers, got {depths!r}")
    wanted = sorted({check_positive_int("depths", d) for d in depths})
    width = check_positive_int("width", width)
    trials = check_positive_int("trials", trials)
    act = check_activation(activation)
    w = check_positive_float("sigma_w2", sigma_w2)
    b = check_nonnegative_float("sigma_b2", sigma_b2)
    kind = check_choice("weight_distribution", weight_distribution, ("gaussian", "orthogonal"))
    rng = check_seed(seed)
    q_star = float(fixed_point(w, b, act)) if act.name != "linear" else 1.0
    moment = (q_star - b) / w if math.isfinite(q_star) and q_star > b else 1.0
    h = math.sqrt(moment) * rng.standard_normal((trials, 1, width))
    init = get_initializer("orthogonal" if kind == "orthogonal" else "lecun_normal")
    jacobian = np.broadcast_to(np.eye(width), (trials, width, width)).copy()
    spectra: dict[int, np.ndarray] = {}
    for layer in range(1, wanted[-1] + 1):  # a loop over layers: each needs the one before
        weight = init.sample(rng, width, width, weight_scale=math.sqrt(w), trials=trials)
        z = h @ weight
        if b > 0:
            z += math.sqrt(b) * rng.standard_normal((trials, 1, width))
        h, slope = act.value_and_derivative(z)
        # Row-vector convention: dh_L = dx @ J, and each layer maps J to J W diag(phi'(z)).
        jacobian = np.matmul(jacobian, weight, out=jacobian)
        jacobian *= slope
        if layer in wanted:
            spectra[layer] = np.linalg.svd(jacobian, compute_uv=False)
    return spectra


def predicted_jacobian_variance(
    depth: ArrayLike, activation: str | Activation, sigma_w2: float, sigma_b2: float = 0.0
) -> dict[str, np.ndarray]:
    r"""Predict the variance of the eigenvalues of $J J^\top$ at $\chi_1 = 1$ (Pennington et al.).

    With $\mu_k = \mathbb{E}[\phi'(\sqrt{q^*} z)^{2k}]$ and $\chi_1 = \sigma_w^2 \mu_1 = 1$, the
    variance of the eigenvalue distribution of $J J^\top$ for a wide network of depth $L$ is
    $L (\mu_2 / \mu_1^2 - 1 - s_1)$, with $s_1 = -1$ for Gaussian and $0$ for orthogonal weights.
    For ReLU $\mu_1 = \mu_2 = p = 1/2$, the fraction of active units: $L / p$ and
    $L (1/p - 1)$.
    The formula is the leading order for a width much larger than the depth.

    Returns:
        `{"gaussian": ..., "orthogonal": ...}`, each shaped like `depth`.

    Raises:
        ValueError: If the network is not critical ($|\chi_1 - 1| > 10^{-6}$).

    Example:
        ```py
        from vangrad.theory import predicted_jacobian_variance

        print({k: v.tolist() for k, v in predicted_jacobian_variance([8, 32], "relu", 2.0).items()})
        #> {'gaussian': [16.0, 64.0], 'orthogonal': [8.0, 32.0]}
        ```
    """
    act = check_activation(activation)
    w = check_positive_float("sigma_w2", sigma_w2)
    b = check_nonnegative_float("sigma_b2", sigma_b2)
    depth_array = check_finite_array("depth", depth, ndim=range(33)).astype(np.float64)
    critical = float(chi_1(w, b, act))
    if abs(critical - 1) > 1e-6:
        raise ValueError(f"the formula holds at chi_1 = 1; got chi_1 = {critical:.6g}")
    closed = _closed_form(act)
    if closed is not None:
        ratio = 1.0 / closed[1]  # phi'^2 is 0 or a constant c on each side: mu_2 / mu_1^2 = 1/p
        if act.name == "leaky_relu":
            slope2 = act.params["slope"] ** 2
            ratio = 0.5 * (1 + slope2 * slope2) / closed[1] ** 2
        elif act.name == "linear":
            ratio = 1.0
    else:
        q_star = np.atleast_1d(fixed_point(w, b, act))
        kinked = act.name in _KINKED
        mu_1 = _expect(lambda x: act.derivative(x) ** 2, q_star, kinked=kinked)[0]
        mu_2 = _expect(lambda x: act.derivative(x) ** 4, q_star, kinked=kinked)[0]
        ratio = mu_2 / mu_1**2
    return {"gaussian": depth_array * ratio, "orthogonal": depth_array * (ratio - 1.0)}
