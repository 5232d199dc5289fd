"""The engine: one forward and one backward pass through a deep network, with gradient norms.

This module is the reference implementation, written to be read: a forward loop that keeps one
record per layer, and a backward loop that applies the chain rule to those records, one step
per line. The site's page *How the engine works* walks through it.

Conventions. Layers `l = 1..L` have weights `W_l` of shape `(n_{l-1}, n_l)`; the input batch is
`h_0 = x`, shape `(batch, n_0)`. Each layer computes

- `z_l = h_{l-1} @ W_l`, plus a bias `b_l` if the caller passes biases,
- with batch normalisation, `z_l <- (z_l - mean(z_l)) / sqrt(var(z_l) + 1e-5)` (mean and biased
  variance over the batch, per unit, no learned scale or shift); with layer normalisation
  (Ba et al. 2016) the same over the layer's units, per sample, so it works at a batch of 1
  (at most one of the two),
- `a_l = phi(z_l)`,
- `h_l = h_{l-1} + a_l` with residual connections (`residual=True`, the identity-mapping block
  of He et al. 2016b), otherwise `h_l = a_l`; with `residual="post"` (the block of He et al.
  2016, activation after the addition) `a_l = phi(h_{l-1} + z_l)` and `h_l = a_l`.

The loss is the sum of every element of `h_L` (an upstream gradient of ones) unless the caller
names another (`loss="random"`, see `loss_upstream`) or passes an upstream gradient.

Log space. The backward pass is linear in the upstream gradient, so after every layer the
running gradient is divided by the power of two just above its norm, and that power's exponent
is added to a running (integer) scale. The `log10` norms are therefore exact at any depth, even
where the norms themselves would underflow to 0.0.

Stacks. Weights of shape `(trials, n_{l-1}, n_l)` describe `trials` independent networks, run
together with batched matrix products; `x` is then `(trials, batch, n_0)`, or `(batch, n_0)`
shared by every trial.

Two engines. `vangrad.fast_engine` computes the same results faster (small layers in groups,
threads over a stack); the tests hold it to this one. The environment variable
`VANGRAD_ENGINE` chooses, per call: `fast` (the default) or `reference`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from vangrad import fast_engine
from vangrad._validation import (
    check_bool,
    check_loss,
    check_loss_or_upstream,
    check_residual,
    check_seed,
)
from vangrad.activations import Activation, values_and_slopes
from vangrad.flow import (
    BATCHNORM_EPSILON,
    SATURATION_THRESHOLD,
    GradientFlow,
    frobenius_norms,
    log10_norms,
    overflow_layers,
    rescale,
    unscale,
)
from vangrad.network_checks import (
    check_activation,
    check_batch_for_batchnorm,
    check_biases,
    check_input,
    check_normalisation,
    check_residual_widths,
    check_upstream,
    check_weights,
    check_width_for_layernorm,
)

__all__ = [
    "ENGINES",
    "Layer",
    "MeasuredGradients",
    "backprop",
    "backward",
    "forward",
    "loss_upstream",
    "run_network",
    "run_reference",
]

ENGINES = ("fast", "reference")
"""The values `VANGRAD_ENGINE` takes; `fast` when it is not set."""

Upstream = np.ndarray | Callable[[np.ndarray], np.ndarray] | None


def loss_upstream(
    loss: str,
    output_shape: tuple[int, ...],
    rng: np.random.Generator,
    dtype: np.dtype | type[np.floating] = np.float64,
) -> np.ndarray | None:
    """The upstream gradient `dLoss/dh_L` of a named loss (one of `LOSSES`), per network.

    Why a named loss. Both losses are linear, `sum(G * h_L)`, so the gradient they send down
    is `G` itself, and the only difference between them is its direction:

    - `"sum"`: `G` is all ones (returned as `None`, the engines' default). The same for every
      sample and unit, so it correlates with anything that is not zero-mean (ReLU's on/off
      masks), and batch normalisation's backward pass, which removes the batch mean, removes it;
      so does layer normalisation's, which removes each sample's mean over the units.
    - `"random"`: `G` is drawn from the standard normal, independent of the network, and then
      scaled, per network, to the norm of the ones, `sqrt(batch * n_L)`. Independence is what
      mean-field theory assumes of the back-propagated signal; the common norm makes the two
      losses' input gradients directly comparable. The name says what matters (a draw
      independent of the network), not the distribution.

    `rng` is the caller's generator: `simulate` and `sweep` draw `G` after the weights, so a
    network has the same weights whichever loss measures it.

    Example:
        ```py
        import numpy as np

        from vangrad.engine import loss_upstream

        g = loss_upstream("random", (2, 8, 4), np.random.default_rng(0))  # 2 networks
        print(g.shape, np.sqrt((g**2).sum(axis=(1, 2))).round(6).tolist())
        #> (2, 8, 4) [5.656854, 5.656854]
        print(loss_upstream("sum", (8, 4), np.random.default_rng(0)))
        #> None
        ```
    """
    loss = check_loss(loss)
    if loss == "sum":
        return None
    g = rng.standard_normal(output_shape, dtype=np.dtype(dtype).type)
    norms = np.sqrt(np.sum(np.square(g, dtype=np.float64), axis=(-2, -1), keepdims=True))
    g *= (np.sqrt(output_shape[-2] * output_shape[-1]) / norms).astype(g.dtype)
    return g


def backprop(
    x: ArrayLike,
    weights: Sequence[ArrayLike],
    activation: str | Activation = "sigmoid",
    *,
    biases: Sequence[ArrayLike] | None = None,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool | str = False,
    upstream: ArrayLike | Callable[[np.ndarray], ArrayLike] | None = None,
    loss: str = "sum",
    seed: int | np.random.Generator = 0,
    keep_grads: bool = False,
) -> GradientFlow:
    r"""Run a forward and a backward pass and measure the gradient at every layer.

    Args:
        x: The input batch, shape `(batch, n_0)`, or `(trials, batch, n_0)` with stacked weights.
        weights: One matrix per layer, `weights[l - 1]` of shape `(n_{l-1}, n_l)`; or all of
            shape `(trials, n_{l-1}, n_l)` for a stack of independent networks.
        activation: A name from `ACTIVATIONS` or an `Activation`.
        biases: Optional, one vector per layer, `biases[l - 1]` of shape `(n_l,)`, or
            `(trials, n_l)` with stacked weights. Default: no biases.
        batchnorm: Normalise each `z_l` over the batch, per unit (needs a batch of at least
            2). A bias before batch normalisation cancels out: its gradient is zero.
        layernorm: Normalise each `z_l` over its units, per sample (Ba et al. 2016): the
            same formula over the other axis, so it works at any batch size but needs layers
            of at least 2 units (over exactly 2 it keeps little more than the sign of their
            difference). It removes each sample's mean over the units, not each unit's mean
            over the batch, so a bias's gradient is not zero (only its mean over the units
            cancels, and the gradient sums to zero over them). Not together with
            `batchnorm`.
        residual: `True`: add each layer's input to its output, $h_l = h_{l-1} + \phi(z_l)$
            (the identity-mapping block of He et al. 2016b). `"post"`: add the input before
            the activation, $h_l = \phi(h_{l-1} + z_l)$ (the block of He et al. 2016, with a
            ReLU after the addition). Both need equal widths.
        upstream: $g_L = \partial L / \partial h_L$, an array that broadcasts to the shape of
            $h_L$; or a function of the output $h_L$ that returns it, for a loss whose gradient
            depends on the output (`lambda h: h - y` for the squared error
            $\tfrac{1}{2} \lVert h_L - y \rVert^2$). Default:
            the gradient of `loss`.
        loss: Used when `upstream` is not given: `"sum"` (default), the sum of `h_L`, an
            upstream gradient of ones; or `"random"`, a standard normal upstream gradient
            scaled to the norm of the ones, drawn from `seed` (see `loss_upstream`).
        seed: For `loss="random"`: an integer >= 0, or a `numpy.random.Generator`
            (unused by the sum loss, which draws nothing).
        keep_grads: Also return every $g_l$, $\partial L / \partial W_l$ (and
            $\partial L / \partial b_l$).

    Returns:
        A `GradientFlow`; its dtype-sensitive arrays follow the input dtype (float32 stays
        float32), its norms are float64.

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If shapes do not chain, `x` or a weight is not finite, `weights` is empty,
            `residual` meets unequal widths, `batchnorm` meets a batch of 1, `layernorm` a
            layer of 1 unit, both are on, `loss` is not one of `LOSSES`, or `upstream` is
            given with `loss="random"`.

    Example:
        ```py
        import numpy as np

        from vangrad import backprop

        rng = np.random.default_rng(0)
        weights = [rng.normal(0, 0.5, size=(4, 4)) for _ in range(30)]
        flow = backprop(rng.normal(size=(8, 4)), weights, "sigmoid")
        print(flow.log10_grad_norms.shape, flow.overflow_layer)
        #> (31,) None
        print(round(float(flow.log10_grad_norms[0] - flow.log10_grad_norms[-1]), 1))
        #> -19.8
        ```
    """
    act = check_activation(activation)
    batchnorm, layernorm = check_normalisation(batchnorm, layernorm)
    residual = check_residual(residual)
    keep_grads = check_bool("keep_grads", keep_grads)
    loss = check_loss_or_upstream(loss, upstream, default="sum")
    rng = check_seed(seed)
    checked = check_weights(weights)
    x_array = check_input(x, checked)
    dtype = np.result_type(x_array, *checked)
    x_array = x_array.astype(dtype, copy=False)
    checked = [w.astype(dtype, copy=False) for w in checked]
    checked_biases = None
    if biases is not None:
        checked_biases = [b.astype(dtype, copy=False) for b in check_biases(biases, checked)]
    if batchnorm:
        check_batch_for_batchnorm(x_array.shape[-2], f"x of shape {x_array.shape}")
    if layernorm:
        for i, w in enumerate(checked):
            check_width_for_layernorm(w.shape[-1], f"weights[{i}] of shape {w.shape}")
    if residual:
        check_residual_widths(checked, residual)
    stack = np.broadcast_shapes(x_array.shape[:-2], *(w.shape[:-2] for w in checked))
    output_shape = (*stack, x_array.shape[-2], checked[-1].shape[-1])
    checked_upstream: Upstream = None
    if callable(upstream):
        loss_gradient = upstream

        def checked_upstream(h: np.ndarray) -> np.ndarray:
            finite = bool(np.isfinite(h).all())  # else the forward pass overflowed
            return check_upstream(
                loss_gradient(h), h.shape, dtype, name="upstream(h_L)", finite=finite
            )

    elif upstream is not None:
        checked_upstream = check_upstream(upstream, output_shape, dtype)
    else:
        checked_upstream = loss_upstream(loss, output_shape, rng, dtype)
    return run_network(
        x_array,
        checked,
        act,
        biases=checked_biases,
        batchnorm=batchnorm,
        layernorm=layernorm,
        residual=residual,
        upstream=checked_upstream,
        keep_grads=keep_grads,
    )


def run_network(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    activation: Activation,
    *,
    biases: Sequence[np.ndarray] | None = None,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool | str = False,
    upstream: Upstream = None,
    keep_grads: bool = False,
    gain: np.ndarray | None = None,
    measure_weight_grads: bool = True,
) -> GradientFlow:
    """`backprop` on checked arrays, by the engine that `VANGRAD_ENGINE` names (default fast).

    This is what the rest of the package calls. Beyond `backprop`'s arguments:

    - `biases` are shaped `(..., 1, n_l)`, to broadcast against `z_l`.
    - `upstream` may also be a function of the output `h_L` that returns `dLoss/dh_L` (a loss
      such as cross-entropy, whose gradient needs the forward pass): it runs between the passes.
    - `gain`, if given, multiplies every layer's product per network, `z_l = gain * (h @ W_l)`,
      without forming the scaled weights: it broadcasts against the stack, so weights of shape
      `(trials, n, n)` and a gain of shape `(scales, 1)` run `scales * trials` networks. The
      weight gradients are with respect to the scaled weights `gain * W_l`.
    - With `measure_weight_grads=False` the weight gradients are skipped (their norms are nan).
    """
    choice = os.environ.get("VANGRAD_ENGINE") or "fast"
    if choice not in ENGINES:
        raise ValueError(
            f"the environment variable VANGRAD_ENGINE must be one of {list(ENGINES)}, "
            f"got {choice!r}"
        )
    run = run_reference if choice == "reference" else fast_engine.run_fast
    return run(
        x,
        weights,
        activation,
        biases=biases,
        batchnorm=batchnorm,
        layernorm=layernorm,
        residual=residual,
        upstream=upstream,
        keep_grads=keep_grads,
        gain=gain,
        measure_weight_grads=measure_weight_grads,
    )


# --8<-- [start:forward]
@dataclass
class Layer:
    """What the backward pass needs of one layer, and the layer's statistics."""

    h_in: np.ndarray  # h_{l-1}, the layer's input
    slope: np.ndarray  # phi'(z_l)
    z_hat: np.ndarray | None  # with batch or layer normalisation: the normalised z_l ...
    inverse_std: np.ndarray | None  # ... 1 / sqrt(var(z_l) + eps), per unit or per sample ...
    axis: int | None  # ... and the axis of the statistics: -2 the batch, -1 the units
    statistics: dict[str, np.ndarray]  # per network: mean, std, saturated...


def forward(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    activation: Activation,
    *,
    biases: Sequence[np.ndarray] | None = None,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool | str = False,
    gain: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Layer]]:
    """Run the layers from `h_0 = x`; return `h_L` and a `Layer` per layer."""
    # Batch normalisation: each unit over the batch; layer normalisation: each sample over
    # the units.
    axis = -2 if batchnorm else -1 if layernorm else None
    h, layers = x, []
    for index, w in enumerate(weights):
        z = h @ w  # z_l = h_{l-1} W_l
        if gain is not None:  # a factor per network (sweeps scale weights)
            z = gain * z
        if biases is not None:
            z = z + biases[index]  # ... + b_l
        z_hat = inverse_std = None
        if axis is not None:  # z_l <- (z_l - mean) / sqrt(var + eps), over the axis
            z_hat, inverse_std = normalise(z, axis=axis)
            z = z_hat  # from here on, z is the normalised z_l
        if residual == "post":  # the input joins before the activation
            z = h + z  # from here on, z is h_{l-1} + z_l
        a, slope = values_and_slopes(activation, z)  # phi(z_l), phi'(z_l)
        h_out = h + a if residual is True else a  # h_l
        statistics = layer_statistics(z, a, slope, h_out, activation)
        layers.append(Layer(h, slope, z_hat, inverse_std, axis, statistics))
        h = h_out
    return h, layers


def normalise(z: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """`(z - mean) * s` over `axis`, and `s = 1 / sqrt(var + eps)`."""
    # Centred on the first entry along the axis before the mean is taken:
    # equal values are then exactly 0, not a rounding error that 1/sqrt(eps)
    # would blow up. Sums accumulate in float64: in float32 their rounding,
    # amplified by 1/std, showed in the norms.
    centred = z - np.take(z, [0], axis=axis)
    mean = centred.mean(axis=axis, keepdims=True, dtype=np.float64)
    centred -= mean.astype(z.dtype)
    square = centred * centred
    variance = np.mean(square, axis=axis, keepdims=True, dtype=np.float64)
    inverse_std = 1.0 / np.sqrt(variance + BATCHNORM_EPSILON)
    inverse_std = inverse_std.astype(z.dtype)
    return centred * inverse_std, inverse_std


# --8<-- [end:forward]


# --8<-- [start:backward]
def backward(
    layers: Sequence[Layer],
    weights: Sequence[np.ndarray],
    upstream: np.ndarray,
    *,
    residual: bool | str = False,
    gain: np.ndarray | None = None,
    has_biases: bool = False,
    measure_weight_grads: bool = True,
    keep_grads: bool = False,
) -> MeasuredGradients:
    """Back-propagate `upstream = dLoss/dh_L`, top layer first."""
    measured = MeasuredGradients(keep=keep_grads)
    # The true gradient dLoss/dh_l is g * 2**scale, with g near unit norm.
    norms = frobenius_norms(upstream)
    measured.add("grads", upstream, 0, norms)
    g, scale = rescale(upstream, norms)
    for layer, w in zip(reversed(layers), reversed(weights), strict=True):
        # Through the activation, a = phi(z): dLoss/dz = dLoss/da * phi'(z).
        dz = g * layer.slope
        # With residual="post", z was h_in + z_l: this dz reaches h_in directly too.
        dz_sum = dz
        # Through the normalisation (derived in normalise_backward).
        if layer.axis is not None:
            dz = normalise_backward(dz, layer.z_hat, layer.inverse_std, layer.axis)
        # Through the bias, z = ... + b: dLoss/db sums dLoss/dz over the
        # batch. It is 0 under batch normalisation, which removes each unit's
        # mean over the batch, bias included; not under layer normalisation,
        # which removes each sample's mean over the units.
        if has_biases:
            db = dz.sum(axis=-2, keepdims=True)
            if layer.axis == -2:
                db = np.zeros_like(db)
            measured.add("bias_grads", db, scale)
        # Through the weights, z = h_in @ W: dLoss/dW = h_in^T @ dLoss/dz ...
        if measure_weight_grads:
            dw = np.swapaxes(layer.h_in, -1, -2) @ dz
            measured.add("weight_grads", dw, scale)
        # ... and dLoss/dh_in = dLoss/dz @ W^T (times the gain, if any).
        g_in = dz @ np.swapaxes(w, -1, -2)
        if gain is not None:
            g_in = g_in * gain
        # Through the residual identity, h = h_in + a: g reaches h_in too.
        if residual is True:
            g_in = g_in + g
        elif residual == "post":  # a = phi(h_in + z_l)
            g_in = g_in + dz_sum
        # Log space: record the norm, then divide g by the power of two just
        # above its norm (exact: only the exponents change), and add that
        # power's exponent to the running scale.
        norms = frobenius_norms(g_in)
        measured.add("grads", g_in, scale, norms)
        g, exponent = rescale(g_in, norms)
        scale = scale + exponent
    return measured.bottom_first()


def normalise_backward(
    dz_hat: np.ndarray,
    z_hat: np.ndarray,
    inverse_std: np.ndarray,
    axis: int,
) -> np.ndarray:
    """The chain rule through `normalise`: `dLoss/dz` from `dLoss/dz_hat`.

    `z_hat = (z - mean(z)) * s` with `s = 1 / sqrt(var(z) + eps)`. With
    `m` samples, `d mean / dz_j = 1/m` and `d var / dz_j = 2 (z_j - mean)/m`,
    so `ds/dz_j = -s^3 (z_j - mean) / m`, and the chain rule through both
    statistics gives

        dLoss/dz = s * (dz_hat - mean(dz_hat) - z_hat * mean(dz_hat * z_hat)).

    The mean of the upstream gradient along `axis` is removed: a gradient
    that is the same along it does not pass at all (the same for every
    sample under batch normalisation, `axis=-2`; for every unit of a sample
    under layer normalisation, `axis=-1`).
    """
    # Centred on the first entry first, as in `normalise`: equal values
    # give exactly 0.
    centred = dz_hat - np.take(dz_hat, [0], axis=axis)
    centred -= centred.mean(axis=axis, keepdims=True)
    projection = np.mean(centred * z_hat, axis=axis, keepdims=True)
    centred -= z_hat * projection
    return centred * inverse_std


# --8<-- [end:backward]


class MeasuredGradients:
    """The `log10` norms `backward` measured per layer, and with `keep` the gradients too.

    Each name (`"grads"`: `dLoss/dh_l`, `"weight_grads"`, `"bias_grads"`) maps to a list with
    one entry per layer, bottom layer first once `bottom_first` has run.
    """

    def __init__(self, *, keep: bool) -> None:
        self.keep = keep
        self.log10_norms: dict[str, list[np.ndarray]] = {}
        self.kept: dict[str, list[np.ndarray]] = {}

    def add(
        self,
        name: str,
        gradient: np.ndarray,
        scale: np.ndarray | int,
        norms: np.ndarray | None = None,
    ) -> None:
        """Record `gradient * 2**scale` (its `norms`, if already known, save a pass)."""
        if norms is None:
            norms = frobenius_norms(gradient)
        self.log10_norms.setdefault(name, []).append(log10_norms(norms, scale))
        if self.keep:
            self.kept.setdefault(name, []).append(unscale(gradient, scale))

    def bottom_first(self) -> MeasuredGradients:
        """Reverse every list (the backward pass runs top layer first); return self."""
        for values in (*self.log10_norms.values(), *self.kept.values()):
            values.reverse()
        return self


def layer_statistics(
    z: np.ndarray, a: np.ndarray, slope: np.ndarray, h: np.ndarray, activation: Activation
) -> dict[str, np.ndarray]:
    """The statistics of one layer, per network: over the batch and the units.

    `finite` is False where `z_l` (after normalisation) or the output `h_l` holds an inf or
    a nan: the forward pass overflowed there.
    """
    axes = (-2, -1)
    threshold = SATURATION_THRESHOLD * activation.derivative_max
    return {
        "mean": a.mean(axis=axes),
        "std": a.std(axis=axes),
        "saturated": np.mean(np.abs(slope) < threshold, axis=axes),
        "finite": np.isfinite(z).all(axis=axes) & np.isfinite(h).all(axis=axes),
    }


def run_reference(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    activation: Activation,
    *,
    biases: Sequence[np.ndarray] | None = None,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool | str = False,
    upstream: Upstream = None,
    keep_grads: bool = False,
    gain: np.ndarray | None = None,
    measure_weight_grads: bool = True,
) -> GradientFlow:
    """`run_network` by the reference engine: `forward`, then `backward`, then the results."""
    if gain is not None:
        gain = gain.astype(x.dtype)[..., np.newaxis, np.newaxis]
    with np.errstate(all="ignore"):  # an overflow is recorded in the result, not warned about
        h, layers = forward(
            x,
            weights,
            activation,
            biases=biases,
            batchnorm=batchnorm,
            layernorm=layernorm,
            residual=residual,
            gain=gain,
        )
        if callable(upstream):
            upstream = upstream(h)
        upstream = np.ones_like(h) if upstream is None else np.array(upstream, dtype=h.dtype)
        measured = backward(
            layers,
            weights,
            np.broadcast_to(upstream, h.shape).copy(),
            residual=residual,
            gain=gain,
            has_biases=biases is not None,
            measure_weight_grads=measure_weight_grads,
            keep_grads=keep_grads,
        )
    stack = h.shape[:-2]

    def per_layer(values: Sequence[np.ndarray]) -> np.ndarray:
        """Values per layer (each per network) as one array `(*stack, layers)`."""
        return np.stack([np.broadcast_to(v, stack) for v in values], axis=-1).astype(np.float64)

    def statistic(name: str) -> np.ndarray:
        return per_layer([layer.statistics[name] for layer in layers])

    finite = np.stack([np.broadcast_to(layer.statistics["finite"], stack) for layer in layers])
    overflow_layer, trial_overflow_layer = overflow_layers(finite)
    norms, kept = measured.log10_norms, measured.kept
    return GradientFlow(
        log10_grad_norms=per_layer(norms["grads"]),
        log10_weight_grad_norms=(
            per_layer(norms["weight_grads"])
            if measure_weight_grads
            else np.full((*stack, len(layers)), np.nan)
        ),
        activation_mean=statistic("mean"),
        activation_std=statistic("std"),
        saturated_fraction=statistic("saturated"),
        overflow_layer=overflow_layer,
        trial_overflow_layer=trial_overflow_layer,
        output=h,
        activation=activation,
        batchnorm=batchnorm,
        layernorm=layernorm,
        residual=residual,
        grads=tuple(kept["grads"]) if keep_grads else None,
        weight_grads=tuple(kept["weight_grads"]) if keep_grads and measure_weight_grads else None,
        log10_bias_grad_norms=per_layer(norms["bias_grads"]) if biases is not None else None,
        # The bias gradients were kept as (..., 1, n_l), for their norms; returned as (..., n_l).
        bias_grads=(
            tuple(db[..., 0, :] for db in kept["bias_grads"])
            if keep_grads and biases is not None
            else None
        ),
    )
