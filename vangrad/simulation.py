"""Build random networks from the registries and measure their gradients in one call."""

from __future__ import annotations

import numpy as np

from vangrad._validation import (
    check_bool,
    check_float_dtype,
    check_loss,
    check_nonnegative_float,
    check_positive_int,
    check_residual,
    check_seed,
)
from vangrad.activations import Activation
from vangrad.engine import loss_upstream, run_network
from vangrad.flow import GradientFlow
from vangrad.initializers import Initializer, get_initializer
from vangrad.network_checks import (
    check_activation,
    check_batch_for_batchnorm,
    check_normalisation,
    check_width_for_layernorm,
)

__all__ = ["simulate"]


def simulate(
    depth: int,
    width: int,
    *,
    activation: str | Activation,
    init: str | Initializer,
    weight_scale: float | None = None,
    bias_std: float = 0.0,
    batch_size: int,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool | str = False,
    trials: int = 1,
    seed: int | np.random.Generator = 0,
    dtype: str | type[np.floating] = "float64",
    loss: str = "sum",
    keep_grads: bool = False,
) -> GradientFlow:
    """Measure the gradients of random networks of `depth` layers of `width` units.

    Draws, from `np.random.default_rng(seed)`, an input `x` of shape `(batch_size, width)` from
    the standard normal (shared by every trial), then the weights of every layer and trial from
    the initialiser, and runs `backprop`. With `trials > 1` the independent networks run together
    as one stacked computation.

    Args:
        depth: The number of layers; an integer >= 1.
        width: The number of units in every layer (and of input features); an integer >= 1.
        activation: A name from `ACTIVATIONS` or an `Activation`.
        init: A name from `INITIALIZERS` or an `Initializer`.
        weight_scale: For `init="normal"`, the standard deviation of the weights (required);
            for every other initialiser, a gain multiplying the weights (default 1).
        bias_std: The standard deviation `sigma_b` of the biases, drawn from `N(0, sigma_b^2)`
            after the weights; 0 (default) means no biases.
        batch_size: The number of input samples; an integer >= 1 (>= 2 with `batchnorm`).
        batchnorm: Normalise each layer's pre-activations over the batch, per unit.
        layernorm: Normalise each layer's pre-activations over its units, per sample (works
            at `batch_size=1`, needs `width >= 2`; not together with `batchnorm`).
        residual: `True`: add each layer's input to its output, `h_l = h_{l-1} + phi(z_l)`;
            `"post"`: add it before the activation, `h_l = phi(h_{l-1} + z_l)` (see `backprop`).
        trials: The number of independent networks; an integer >= 1.
        seed: An integer >= 0, or a `numpy.random.Generator` to draw from.
        dtype: `"float64"` (default) or `"float32"`.
        loss: `"sum"` (default): the loss is the sum of the outputs, an upstream gradient of
            ones. `"random"`: a standard normal upstream gradient, drawn last (so the weights
            are the same for both losses) and independent of the network, as mean-field
            theory assumes, scaled per network to the norm of the ones (see
            `vangrad.engine.loss_upstream`).
        keep_grads: Also return every gradient (see `backprop`).

    Returns:
        A `GradientFlow`; its norms have shape `(depth + 1,)`, or `(trials, depth + 1)` when
        `trials > 1`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a size is below 1, a name is unknown, `weight_scale` is missing for
            `init="normal"`, `batchnorm` meets `batch_size=1`, `layernorm` meets `width=1`,
            or both are on.

    Example:
        ```py
        import numpy as np

        from vangrad import simulate

        flow = simulate(depth=3, width=4, activation="tanh", init="xavier_normal", batch_size=8)
        print(flow.grad_norms.shape)
        #> (4,)
        # 20 layers of one tanh unit, N(0, scale^2) weights, 1000 networks: the weight scale
        # decides how much of the gradient reaches the input (the input is simulate's own draw).
        setup = {"depth": 20, "width": 1, "activation": "tanh", "init": "normal", "trials": 1000}
        for scale in (0.5, 1.0, 1.5):
            flow = simulate(**setup, weight_scale=scale, batch_size=1)
            print(scale, round(float(np.median(flow.log10_grad_norms[:, 0])), 1))
            #> 0.5 -11.4
            #> 1.0 -5.4
            #> 1.5 -2.5
        ```
    """
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    batch_size = check_positive_int("batch_size", batch_size)
    trials = check_positive_int("trials", trials)
    act = check_activation(activation)
    initializer = get_initializer(init)
    scale = initializer.check_scale(weight_scale)
    batchnorm, layernorm = check_normalisation(batchnorm, layernorm)
    residual = check_residual(residual)
    keep_grads = check_bool("keep_grads", keep_grads)
    bias_std = check_nonnegative_float("bias_std", bias_std)
    loss = check_loss(loss)
    float_dtype = check_float_dtype("dtype", dtype)
    if batchnorm:
        check_batch_for_batchnorm(batch_size, f"batch_size={batch_size}")
    if layernorm:
        check_width_for_layernorm(width, f"width={width}")
    rng = check_seed(seed)

    x = rng.standard_normal((batch_size, width), dtype=float_dtype)
    # All layers (and trials) in one draw: a stack of depth * trials matrices.
    drawn = initializer.sample(
        rng, width, width, weight_scale=scale, trials=depth * trials, dtype=float_dtype
    )
    shape = (depth, width, width) if trials == 1 else (depth, trials, width, width)
    weights = list(drawn.reshape(shape))
    biases = None
    if bias_std > 0:
        # Drawn after the weights, so a network with biases has the same weights as one without.
        drawn_biases = rng.normal(0.0, bias_std, size=(depth, trials, 1, width))
        biases = list(drawn_biases.astype(float_dtype).reshape(*shape[:-2], 1, width))
    stack = () if trials == 1 else (trials,)
    upstream = loss_upstream(loss, (*stack, batch_size, width), rng, float_dtype)
    return run_network(
        x,
        weights,
        act,
        biases=biases,
        batchnorm=batchnorm,
        layernorm=layernorm,
        residual=residual,
        upstream=upstream,
        keep_grads=keep_grads,
    )
