"""Train a deep classifier with mini-batch SGD or Adam and record how much every layer learns.

The network is the engine's stack of layers followed by a linear readout and a softmax:

- `depth` layers `h_l = phi(h_{l-1} W_l + b_l)` (optionally with batch or layer normalisation
  and residual connections), the first taking the `n_features` inputs to `width` units, every
  other one `width -> width`;
- a readout `logits = h_depth W_out + b_out` with no activation, and the mean softmax
  cross-entropy against integer labels as the loss.

Design. The layers run through the engine's own forward and backward pass
(`vangrad.engine.run_network`), so the gradients that training follows are the ones the rest of the
site measures. Two parts of the network do not fit the engine, and are handled here:

- The readout. The engine applies one activation to every layer, and a softmax readout must be
  linear. So the readout, the softmax and the loss live in the `upstream` function the engine
  calls between its two passes: it turns `h_depth` into logits, computes the loss and its
  gradient, keeps the readout's own gradient, and hands `dLoss/dh_depth` back to the engine.
  The tests check all of it against finite differences of the loss.
- Residual connections. `h_l = h_{l-1} + a_l` needs every layer to keep its width, but the
  first layer widens the input. Rather than change the engine, the input is embedded in
  `width` dimensions by padding it with zeros, and the first weight matrix with zero rows to
  match. The padded rows multiply zeros, so the network computes exactly the same `z_1`, their
  gradient is exactly zero, and they are dropped again before the update: the stored first
  layer keeps its true shape `(n_features, width)`. What the padding adds is the skip of the
  first layer, `h_1 = [x, 0] + a_1`: the input itself flows along the residual path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
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
from vangrad.activations import Activation
from vangrad.engine import forward, run_network
from vangrad.flow import GradientFlow
from vangrad.initializers import Initializer, get_initializer
from vangrad.network_checks import (
    check_activation,
    check_batch_for_batchnorm,
    check_normalisation,
    check_width_for_layernorm,
)

__all__ = [
    "ADAM_BETAS",
    "ADAM_EPSILON",
    "OPTIMIZERS",
    "Gradients",
    "Network",
    "TrainingResult",
    "layer_outputs",
    "loss_and_gradients",
    "make_network",
    "predict_proba",
    "train",
]

OPTIMIZERS = ("adam", "sgd")
"""The update rules `train` knows (its `optimizer` argument)."""

ADAM_BETAS = (0.9, 0.999)
"""Adam's default decay rates of its two moving averages (Kingma and Ba, 2015)."""

ADAM_EPSILON = 1e-8
"""Adam's default `epsilon`, added to the root mean square of the gradient (Kingma and Ba)."""


@dataclass(frozen=True, eq=False)
class Network:
    """The parameters and architecture of a classifier (see the module's description).

    Attributes:
        weights: `depth + 1` matrices: `weights[0]` of shape `(n_features, width)`, then
            `depth - 1` of shape `(width, width)`, then the readout `(width, classes)`.
        biases: One vector per matrix, `biases[l]` of shape `(weights[l].shape[1],)`.
        activation: The activation of every layer but the (linear) readout.
        batchnorm: Whether each layer's pre-activations are normalised over the batch.
        residual: Whether each layer adds its input to its output (the input itself padded with
            zeros to `width`).
        layernorm: Whether each layer's pre-activations are normalised over its units, per
            sample (not together with `batchnorm`; the readout is never normalised).
    """

    weights: tuple[np.ndarray, ...] = field(repr=False)
    biases: tuple[np.ndarray, ...] = field(repr=False)
    activation: Activation
    batchnorm: bool = False
    residual: bool = False
    layernorm: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.activation, Activation):
            raise TypeError(
                f"activation must be an Activation, got {type(self.activation).__name__}"
            )
        if len(self.weights) < 2 or len(self.biases) != len(self.weights):
            raise ValueError(
                "a Network needs at least two weight matrices (a layer and the readout) and one "
                f"bias per matrix, got {len(self.weights)} and {len(self.biases)}"
            )
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            chained = i == 0 or w.shape[0] == self.weights[i - 1].shape[1]
            if w.ndim != 2 or b.shape != w.shape[1:] or not chained:
                raise ValueError(
                    f"weights[{i}] of shape {w.shape} with biases[{i}] of shape {b.shape} do "
                    "not chain: each matrix is (inputs, outputs), each bias (outputs,)"
                )
        if self.residual and self.n_features > self.width:
            raise ValueError("residual=True needs width >= n_features")
        check_normalisation(self.batchnorm, self.layernorm)
        if self.layernorm:
            check_width_for_layernorm(self.width, f"width={self.width}")

    @property
    def depth(self) -> int:
        """The number of layers with an activation (the readout not counted)."""
        return len(self.weights) - 1

    @property
    def width(self) -> int:
        """The number of units in each layer with an activation."""
        return self.weights[0].shape[1]

    @property
    def n_features(self) -> int:
        """The number of input features."""
        return self.weights[0].shape[0]

    @property
    def n_classes(self) -> int:
        """The number of classes (outputs of the readout)."""
        return self.weights[-1].shape[1]


@dataclass(frozen=True, eq=False)
class Gradients:
    """The loss of a network on a batch, and its gradients.

    Attributes:
        loss: The mean softmax cross-entropy over the batch.
        accuracy: The fraction of the batch whose largest logit is the true class.
        weights: `dLoss/dW_l`, one array per matrix of `Network.weights` (same shapes).
        biases: `dLoss/db_l`, one array per vector of `Network.biases`.
    """

    loss: float
    accuracy: float
    weights: tuple[np.ndarray, ...] = field(repr=False)
    biases: tuple[np.ndarray, ...] = field(repr=False)


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """What `train` recorded, one row per step; columns are the layers, the readout last.

    Attributes:
        network: The network after the last step.
        loss: The loss on each step's mini-batch, before that step's update; shape `(steps,)`.
        accuracy: The accuracy on each step's mini-batch, before the update; shape `(steps,)`.
        grad_norms: `||dLoss/dW_l||` (Frobenius) at each step, shape `(steps, depth + 1)`.
        update_ratios: `||Delta W_l|| / ||W_l||`: the norm of the update actually applied to
            `W_l` at each step (momentum included) over the norm of `W_l` before it; shape
            `(steps, depth + 1)`. `inf` where `W_l` is all zeros and moves, `nan` where it
            is all zeros and stays.
    """

    network: Network
    loss: np.ndarray = field(repr=False)
    accuracy: np.ndarray = field(repr=False)
    grad_norms: np.ndarray = field(repr=False)
    update_ratios: np.ndarray = field(repr=False)

    @property
    def steps(self) -> int:
        """The number of steps taken."""
        return self.loss.shape[0]


def make_network(
    n_features: int,
    n_classes: int,
    *,
    depth: int,
    width: int,
    activation: str | Activation,
    init: str | Initializer,
    weight_scale: float | None = None,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool = False,
    seed: int | np.random.Generator = 0,
) -> Network:
    """Draw a classifier's weights from an initialiser; the biases start at zero.

    Every matrix, the readout included, is drawn with the same rule for its own fan-in and
    fan-out, as a plain implementation would.

    Args:
        n_features: Inputs per sample; an integer >= 1.
        n_classes: Classes; an integer >= 2.
        depth: Layers with an activation; an integer >= 1.
        width: Units per such layer; an integer >= 1 (>= `n_features` with `residual`).
        activation: A name from `ACTIVATIONS` or an `Activation`.
        init: A name from `INITIALIZERS` or an `Initializer`.
        weight_scale: The standard deviation for `init="normal"` (required), a gain otherwise.
        batchnorm: Normalise each layer's pre-activations over the batch.
        layernorm: Normalise each layer's pre-activations over its units, per sample (needs
            `width >= 2`; not together with `batchnorm`).
        residual: Add each layer's input to its output.
        seed: An integer >= 0, or a `numpy.random.Generator`.

    Returns:
        The `Network`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a size is out of range, a name is unknown, or `weight_scale` is missing
            for `init="normal"`, or `batchnorm` and `layernorm` are both on.

    Example:
        ```py
        from vangrad.training import make_network

        net = make_network(2, 3, depth=4, width=8, activation="relu", init="he_normal")
        print([w.shape for w in net.weights])
        #> [(2, 8), (8, 8), (8, 8), (8, 8), (8, 3)]
        ```
    """
    n_features = check_positive_int("n_features", n_features)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    act = check_activation(activation)
    initializer = get_initializer(init)
    scale = initializer.check_scale(weight_scale)
    batchnorm, layernorm = check_normalisation(batchnorm, layernorm)
    residual = check_bool("residual", residual)
    if layernorm:
        check_width_for_layernorm(width, f"width={width}")
    if residual and width < n_features:
        raise ValueError(
            f"residual=True embeds the {n_features} input features in the first layer's width, "
            f"so width must be >= n_features, got width={width}"
        )
    rng = check_seed(seed)
    shapes = [(n_features, width)] + [(width, width)] * (depth - 1) + [(width, n_classes)]
    weights = tuple(initializer.sample(rng, *shape, weight_scale=scale) for shape in shapes)
    biases = tuple(np.zeros(shape[1]) for shape in shapes)
    return Network(
        weights, biases, act, batchnorm=batchnorm, residual=residual, layernorm=layernorm
    )


def loss_and_gradients(network: Network, x: ArrayLike, y: ArrayLike) -> Gradients:
    """Return the loss of `network` on the batch `(x, y)` and its gradients.

    Args:
        network: The network.
        x: The inputs, shape `(batch, n_features)`.
        y: The integer labels, shape `(batch,)`, each in `0..n_classes - 1`.

    Returns:
        The `Gradients`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If `x` or `y` has the wrong shape or values.

    Example:
        ```py
        import numpy as np

        from vangrad.training import loss_and_gradients, make_network

        net = make_network(2, 2, depth=3, width=4, activation="tanh", init="xavier_normal")
        grads = loss_and_gradients(net, np.ones((5, 2)), np.array([0, 1, 0, 1, 1]))
        print(round(grads.loss, 3), [g.shape for g in grads.weights][-1])
        #> 0.768 (4, 2)
        ```
    """
    network = _check_network(network)
    x_array, y_array = _check_data(x, y, network)
    return _loss_and_gradients(network, x_array, y_array)


def predict_proba(network: Network, x: ArrayLike) -> np.ndarray:
    """Return the class probabilities (the softmax of the logits), shape `(batch, n_classes)`.

    With batch normalisation every layer is normalised with the statistics of `x` itself, as
    during training (the engine keeps no running averages): pass a batch that looks like the
    training data, not, say, a grid of points. Layer normalisation uses each sample's own
    statistics, so there every sample's probabilities are the same in any batch.

    Example:
        ```py
        import numpy as np

        from vangrad.training import make_network, predict_proba

        net = make_network(2, 3, depth=2, width=4, activation="relu", init="he_normal")
        p = predict_proba(net, np.zeros((4, 2)))
        print(p.shape, np.allclose(p.sum(axis=1), 1.0))
        #> (4, 3) True
        ```
    """
    network = _check_network(network)
    x_array = _check_x(x, network)
    return _forward(network, x_array)


def layer_outputs(network: Network, x: ArrayLike) -> tuple[np.ndarray, ...]:
    """Return the features every layer computes from the batch `x`: `(h_0, h_1, ..., h_depth)`.

    `h_0` is `x` itself; `h_depth` is what the readout sees. The forward pass is the engine's,
    so these are the values the gradients of `loss_and_gradients` are taken at. With
    `residual` the layers see `x` padded with zeros to `width` (see the module's description);
    `h_0` is returned unpadded.

    Example:
        ```py
        import numpy as np

        from vangrad.training import layer_outputs, make_network

        net = make_network(2, 2, depth=3, width=5, activation="tanh", init="xavier_normal")
        print([h.shape for h in layer_outputs(net, np.ones((4, 2)))])
        #> [(4, 2), (4, 5), (4, 5), (4, 5)]
        ```
    """
    network = _check_network(network)
    x_array = _check_x(x, network)
    padded, weights = _hidden_layers(network, x_array)
    with np.errstate(all="ignore"):  # as in the engine: an overflow shows as inf or nan
        h, layers = forward(
            padded,
            weights,
            network.activation,
            biases=[b[np.newaxis, :] for b in network.biases[:-1]],
            batchnorm=network.batchnorm,
            layernorm=network.layernorm,
            residual=network.residual,
        )
    return (x_array, *(layer.h_in for layer in layers[1:]), h)


def train(
    network: Network,
    x: ArrayLike,
    y: ArrayLike,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    betas: tuple[float, float] | None = None,
    epsilon: float | None = None,
    seed: int | np.random.Generator = 0,
) -> TrainingResult:
    """Train `network` with mini-batch SGD (optionally with momentum) or Adam; record every step.

    Each step draws `batch_size` distinct samples at random, computes the loss and gradients
    `g = dLoss/dp` with the engine, and updates every weight and bias `p`. With
    `optimizer="sgd"`, by the heavy-ball rule

        v <- momentum * v + g,    p <- p - learning_rate * v    (v starts at 0),

    which is plain SGD for `momentum=0`. With `optimizer="adam"`, by Adam (Kingma and Ba,
    2015, Algorithm 1), entry by entry, at step `t = 1, 2, ...`:

        m <- b1 * m + (1 - b1) * g,       s <- b2 * s + (1 - b2) * g**2    (both start at 0),
        p <- p - learning_rate * m_hat / (sqrt(s_hat) + epsilon),
        with m_hat = m / (1 - b1**t) and s_hat = s / (1 - b2**t),

    where `(b1, b2) = betas`. The bias corrections undo the start at zero, so the first step
    moves every entry by `learning_rate * g / (|g| + epsilon)`, about `learning_rate`, whatever
    the gradient's size: the step is set by the learning rate, not by the gradient, as long
    as `|g|` is well above `epsilon`. The network passed in is not changed.

    Args:
        network: The network to start from (see `make_network`).
        x: The training inputs, shape `(n, n_features)`.
        y: The integer labels, shape `(n,)`, each in `0..n_classes - 1`.
        steps: The number of updates; an integer >= 1.
        batch_size: Samples per step; an integer from 1 (2 with batch normalisation) to `n`.
        learning_rate: The step size; a number > 0.
        optimizer: `"sgd"` (default) or `"adam"`.
        momentum: SGD's momentum coefficient; a number in `[0, 1)` (only with `"sgd"`).
        betas: Adam's decay rates `(b1, b2)`, each a number in `[0, 1)` (only with `"adam"`);
            default `ADAM_BETAS`, `(0.9, 0.999)`.
        epsilon: Adam's `epsilon`, a number > 0 (only with `"adam"`); default `ADAM_EPSILON`,
            `1e-8`. A gradient entry far below it gets a step of about
            `learning_rate * |g| / epsilon` instead of `learning_rate`.
        seed: An integer >= 0, or a `numpy.random.Generator`, for the mini-batches.

    Returns:
        A `TrainingResult`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range, or the loss stops being finite (the message
            names the step: lower the learning rate).

    Example:
        ```py
        from vangrad.datasets import spirals
        from vangrad.training import make_network, train

        x, y = spirals(100, turns=0.5, seed=0)
        net = make_network(2, 2, depth=3, width=16, activation="relu", init="he_normal")
        result = train(net, x, y, steps=300, batch_size=32, learning_rate=0.1, momentum=0.9)
        print(result.update_ratios.shape, result.loss[:10].mean() > result.loss[-10:].mean())
        #> (300, 4) True
        ```
    """
    network = _check_network(network)
    x_array, y_array = _check_data(x, y, network)
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    rule = _check_rule(optimizer, learning_rate, momentum, betas, epsilon)
    n = x_array.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the {n} samples of x, got {batch_size}")
    if network.batchnorm:
        check_batch_for_batchnorm(batch_size, f"batch_size={batch_size}")
    rng = check_seed(seed)

    weights = [w.copy() for w in network.weights]
    biases = [b.copy() for b in network.biases]
    # SGD's velocity, or Adam's first moment; Adam's second moment (unused by SGD).
    weight_velocity = [np.zeros_like(w) for w in weights]
    bias_velocity = [np.zeros_like(b) for b in biases]
    weight_square = [np.zeros_like(w) for w in weights]
    bias_square = [np.zeros_like(b) for b in biases]
    layers = len(weights)
    loss = np.empty(steps)
    accuracy = np.empty(steps)
    grad_norms = np.empty((steps, layers))
    update_ratios = np.empty((steps, layers))

    for step in range(steps):
        batch = rng.choice(n, size=batch_size, replace=False)
        current = replace(network, weights=tuple(weights), biases=tuple(biases))
        grads = _loss_and_gradients(current, x_array[batch], y_array[batch])
        if not math.isfinite(grads.loss):
            raise ValueError(
                f"the loss stopped being finite at step {step} (it was {grads.loss}): the "
                "updates diverged; lower the learning rate"
            )
        loss[step], accuracy[step] = grads.loss, grads.accuracy
        for layer in range(layers):
            update = rule.update(
                grads.weights[layer], weight_velocity[layer], weight_square[layer], step
            )
            bias_update = rule.update(
                grads.biases[layer], bias_velocity[layer], bias_square[layer], step
            )
            grad_norms[step, layer] = np.linalg.norm(grads.weights[layer])
            # Norm of W before the update: the ratio says what fraction of W this step changed.
            # A matrix of zeros has no scale: inf if it moves, nan if it does not.
            with np.errstate(divide="ignore", invalid="ignore"):
                update_ratios[step, layer] = np.divide(
                    np.linalg.norm(update), np.linalg.norm(weights[layer])
                )
            weights[layer] = weights[layer] - update
            biases[layer] = biases[layer] - bias_update

    final = replace(network, weights=tuple(weights), biases=tuple(biases))
    return TrainingResult(final, loss, accuracy, grad_norms, update_ratios)


# --- the computation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """An update rule with its settings (checked by `_check_rule`)."""

    optimizer: str
    learning_rate: float
    momentum: float = 0.0
    b1: float = 0.0
    b2: float = 0.0
    epsilon: float = 0.0

    def update(self, g: np.ndarray, first: np.ndarray, second: np.ndarray, step: int) -> np.ndarray:
        """The change to subtract from a parameter whose gradient is `g` at `step` (from 0).

        `first` (SGD's velocity, Adam's m) and `second` (Adam's s) are the rule's state for
        that parameter, updated in place.
        """
        if self.optimizer == "sgd":
            first *= self.momentum
            first += g
            return self.learning_rate * first
        t = step + 1
        # Squares (and decayed moments) of a gradient that vanished may underflow to 0: harmless.
        with np.errstate(under="ignore"):
            first *= self.b1
            first += (1 - self.b1) * g
            second *= self.b2
            second += (1 - self.b2) * g**2
            m_hat = first / (1 - self.b1**t)
            s_hat = second / (1 - self.b2**t)
            return self.learning_rate * m_hat / (np.sqrt(s_hat) + self.epsilon)


def _hidden_layers(network: Network, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The input and the weights of the hidden layers, padded for residual connections.

    With `residual`, the input and the first matrix are padded to `width` (see the module's
    description): zeros in the input's extra columns, zero rows in the first matrix, so z_1 is
    unchanged.
    """
    weights = list(network.weights[:-1])
    if network.residual and network.n_features < network.width:
        x = np.pad(x, ((0, 0), (0, network.width - network.n_features)))
        weights[0] = np.pad(weights[0], ((0, network.width - network.n_features), (0, 0)))
    return x, weights


def _run_layers(
    network: Network,
    x: np.ndarray,
    upstream: Callable[[np.ndarray], np.ndarray],
) -> GradientFlow:
    """Run the hidden layers through the engine; `upstream` turns `h_depth` into its gradient."""
    x, weights = _hidden_layers(network, x)
    return run_network(
        x,
        weights,
        network.activation,
        biases=[b[np.newaxis, :] for b in network.biases[:-1]],
        batchnorm=network.batchnorm,
        layernorm=network.layernorm,
        residual=network.residual,
        upstream=upstream,
        keep_grads=True,
    )


def _softmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the softmax and its log, stable for any finite logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):
        log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return np.exp(log_p), log_p


def _loss_and_gradients(network: Network, x: np.ndarray, y: np.ndarray) -> Gradients:
    readout, readout_bias = network.weights[-1], network.biases[-1]
    kept: dict[str, np.ndarray | float] = {}

    def upstream(h: np.ndarray) -> np.ndarray:
        # The linear readout and the loss, between the engine's forward and backward passes.
        p, log_p = _softmax(h @ readout + readout_bias)
        rows = np.arange(y.size)
        kept["loss"] = float(-log_p[rows, y].mean())
        kept["accuracy"] = float((p.argmax(axis=-1) == y).mean())
        dlogits = p
        dlogits[rows, y] -= 1.0
        dlogits /= y.size
        kept["readout"] = h.T @ dlogits
        kept["readout_bias"] = dlogits.sum(axis=0)
        return dlogits @ readout.T

    flow = _run_layers(network, x, upstream)
    assert flow.weight_grads is not None  # keep_grads=True returns them
    assert flow.bias_grads is not None
    weight_grads = list(flow.weight_grads)
    # Drop the padded rows again: their gradient is exactly zero (they multiply zeros).
    weight_grads[0] = weight_grads[0][: network.n_features]
    return Gradients(
        loss=float(kept["loss"]),
        accuracy=float(kept["accuracy"]),
        weights=(*weight_grads, np.asarray(kept["readout"])),
        biases=(*flow.bias_grads, np.asarray(kept["readout_bias"])),
    )


def _forward(network: Network, x: np.ndarray) -> np.ndarray:
    """The class probabilities: the engine's forward pass, then the readout. No backward pass."""
    x, weights = _hidden_layers(network, x)
    with np.errstate(all="ignore"):  # as in the engine: an overflow shows as inf or nan
        h, _ = forward(
            x,
            weights,
            network.activation,
            biases=[b[np.newaxis, :] for b in network.biases[:-1]],
            batchnorm=network.batchnorm,
            layernorm=network.layernorm,
            residual=network.residual,
        )
    return _softmax(h @ network.weights[-1] + network.biases[-1])[0]


# --- argument checks ----------------------------------------------------------------------------


def _check_unit_interval(name: str, value: object) -> float:
    """A number in `[0, 1)`: a momentum or a decay rate (1 would never forget)."""
    result = check_nonnegative_float(name, value)
    if result >= 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return result


def _check_betas(betas: object) -> tuple[float, float]:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of numbers (b1, b2), got {betas!r}")
    return _check_unit_interval("betas[0]", betas[0]), _check_unit_interval("betas[1]", betas[1])


def _check_rule(
    optimizer: object, learning_rate: object, momentum: object, betas: object, epsilon: object
) -> _Rule:
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    rate = check_positive_float("learning_rate", learning_rate)
    mu = _check_unit_interval("momentum", momentum)
    if optimizer == "sgd":
        for name, value in (("betas", betas), ("epsilon", epsilon)):
            if value is not None:
                raise ValueError(f"{name} is for optimizer='adam', got {name}={value!r} with 'sgd'")
        return _Rule("sgd", rate, momentum=mu)
    if mu != 0:
        raise ValueError(
            f"momentum is for optimizer='sgd' (Adam's is betas[0]), got momentum={momentum!r}"
        )
    b1, b2 = _check_betas(ADAM_BETAS if betas is None else betas)
    eps = ADAM_EPSILON if epsilon is None else check_positive_float("epsilon", epsilon)
    return _Rule("adam", rate, b1=b1, b2=b2, epsilon=eps)


def _check_network(network: object) -> Network:
    if not isinstance(network, Network):
        raise TypeError(
            f"network must be a Network (see make_network), got {type(network).__name__}"
        )
    return network


def _check_x(x: object, network: Network) -> np.ndarray:
    x_array = check_finite_array("x", x, ndim=(2,)).astype(np.float64, copy=False)
    if x_array.shape[0] == 0 or x_array.shape[1] != network.n_features:
        raise ValueError(
            f"x must have shape (batch >= 1, {network.n_features}) for this network, "
            f"got {x_array.shape}"
        )
    if network.batchnorm:
        check_batch_for_batchnorm(x_array.shape[0], f"x of shape {x_array.shape}")
    return x_array


def _check_data(x: object, y: object, network: Network) -> tuple[np.ndarray, np.ndarray]:
    x_array = _check_x(x, network)
    y_array = np.asarray(y)
    if not np.issubdtype(y_array.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y_array.dtype}")
    if y_array.shape != x_array.shape[:1]:
        raise ValueError(
            f"y must hold one label per row of x, shape {x_array.shape[:1]}, got {y_array.shape}"
        )
    if y_array.min() < 0 or y_array.max() >= network.n_classes:
        raise ValueError(
            f"y's labels must lie in 0..{network.n_classes - 1} (the network's classes), got "
            f"{int(y_array.min())}..{int(y_array.max())}"
        )
    return x_array, y_array.astype(np.intp, copy=False)
