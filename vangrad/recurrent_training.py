r"""Train one recurrent layer and a linear readout on a sequence task, and record the gradients.

The model reads a whole sequence and answers once, from the last hidden state:

- a recurrent layer (any cell of `backprop_through_time`), run from $h_0 = 0$ over
  $x_1, \dots, x_T$;
- a readout $\hat y = h_T W_\text{out} + b_\text{out}$ with no activation, and the mean squared
  error $L = \frac{1}{BK} \sum (\hat y - y)^2$ over the batch and the `K` outputs as the loss.

Design, as in `vangrad.training`: the layer runs through the recurrent engine itself, so the
gradients training follows are the ones the other pages measure. The readout and the loss live
in the `upstream` function the engine calls between its forward and backward passes: it turns
$h_T$ into predictions, keeps them for the readout's own gradient, and hands
$\partial L / \partial h_T = \frac{2}{BK} (\hat y - y) W_\text{out}^\top$ back to the engine. The
update is Adam (Kingma and Ba 2015, the rule `vangrad.training` uses), optionally after
clipping the gradient of all the parameters together by its norm (Pascanu et al. 2013,
`vangrad.clip_by_norm`).

The task is the adding problem (Hochreiter and Schmidhuber 1997, in the form of Le et al.
2015), which only a network that keeps two numbers for many steps can solve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from vangrad._validation import (
    check_cell,
    check_finite_array,
    check_instance,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from vangrad.clipping import clip_by_norm
from vangrad.initializers import get_initializer, recurrent_params
from vangrad.recurrent import RecurrentFlow, backprop_through_time
from vangrad.training import _check_rule

__all__ = [
    "RecurrentGradients",
    "RecurrentModel",
    "RecurrentTrainingResult",
    "adding_problem",
    "make_recurrent_model",
    "recurrent_loss_and_gradients",
    "train_recurrent",
]

READOUT = ("readout_weight", "readout_bias")
"""The names of the readout's parameters, next to the layer's (`weight_ih`, ...)."""


def adding_problem(
    length: int, samples: int, *, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    r"""Draw samples of the adding problem: two marked numbers among `length`, and their sum.

    Each sample is a sequence of `length` steps with two features: a number drawn uniformly
    from $[0, 1]$, and a marker that is 1 at exactly two steps and 0 elsewhere, one of them
    uniformly in the first half of the sequence and one in the second half (Le et al. 2015).
    The target is the sum of the two marked numbers. A model that ignores the input and always
    answers 1, the target's mean, has a mean squared error of $\operatorname{Var}(u_1 + u_2) =
    1/6$: the baseline any learning has to beat.

    Args:
        length: `T`, the steps of each sequence; an integer >= 2.
        samples: How many sequences; an integer >= 1.
        seed: An integer >= 0 or a `numpy.random.Generator`.

    Returns:
        `(x, y)`: `x` of shape `(T, samples, 2)` (sequence first, as `backprop_through_time`
        takes it) and the targets `y` of shape `(samples, 1)`.

    Example:
        ```py
        from vangrad.recurrent_training import adding_problem

        x, y = adding_problem(10, 4, seed=0)
        print(x.shape, y.shape, x[:, :, 1].sum(axis=0).tolist())
        #> (10, 4, 2) (4, 1) [2.0, 2.0, 2.0, 2.0]
        ```
    """
    length = check_positive_int("length", length, minimum=2)
    samples = check_positive_int("samples", samples)
    rng = check_seed(seed)
    values = rng.uniform(0.0, 1.0, size=(length, samples))
    half = length // 2
    first = rng.integers(0, half, size=samples)
    second = rng.integers(half, length, size=samples)
    markers = np.zeros((length, samples))
    columns = np.arange(samples)
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    targets = values[first, columns] + values[second, columns]
    return np.stack([values, markers], axis=-1), targets[:, np.newaxis]


@dataclass(frozen=True, eq=False)
class RecurrentModel:
    r"""A recurrent layer and a linear readout from its last hidden state.

    Attributes:
        cell: The layer's cell, one of `CELLS`.
        params: The layer's parameters, as `backprop_through_time` takes them.
        readout_weight: $W_\text{out}$, shape `(H, K)`.
        readout_bias: $b_\text{out}$, shape `(K,)`.
    """

    cell: str
    params: Mapping[str, np.ndarray]
    readout_weight: np.ndarray
    readout_bias: np.ndarray

    @property
    def input_size(self) -> int:
        """`N`, the features of each step of the input."""
        return self.params["weight_ih"].shape[-1]

    @property
    def hidden_size(self) -> int:
        """`H`, the units of the recurrent layer."""
        return self.params["weight_hh"].shape[-1]

    @property
    def output_size(self) -> int:
        """`K`, the outputs of the readout."""
        return self.readout_weight.shape[-1]

    def all_params(self) -> dict[str, np.ndarray]:
        """Every parameter by name: the layer's, then `readout_weight` and `readout_bias`."""
        return {
            **self.params,
            "readout_weight": self.readout_weight,
            "readout_bias": self.readout_bias,
        }


def make_recurrent_model(
    cell: str,
    input_size: int,
    hidden_size: int,
    output_size: int = 1,
    *,
    forget_bias: float = 0.0,
    init_hh: str = "orthogonal",
    gain: float | None = None,
    seed: int | np.random.Generator = 0,
) -> RecurrentModel:
    """Draw a model: the layer from `recurrent_params`, the readout from Glorot's uniform rule.

    Args:
        cell: One of `CELLS`.
        input_size: `N`, the features of each step.
        hidden_size: `H`, the recurrent units.
        output_size: `K`, the readout's outputs.
        forget_bias: The LSTM's forget-gate bias (see `recurrent_params`).
        init_hh: The initialiser of `weight_hh` (one of `RECURRENT_INITS`).
        gain: Multiplies `weight_hh` (see `recurrent_params`).
        seed: An integer >= 0 or a `numpy.random.Generator`; the layer is drawn first.

    Returns:
        A `RecurrentModel` with biases (zeros, but for the forget bias) and a zero readout bias.

    Raises:
        TypeError: If an argument has the wrong type (as `recurrent_params`).
        ValueError: If an argument is out of range (as `recurrent_params`).

    Example:
        ```py
        from vangrad.recurrent_training import make_recurrent_model

        model = make_recurrent_model("lstm", 2, 8, forget_bias=1.0, seed=0)
        print(model.hidden_size, model.readout_weight.shape, list(model.all_params())[-2:])
        #> 8 (8, 1) ['readout_weight', 'readout_bias']
        ```
    """
    rng = check_seed(seed)
    params = recurrent_params(
        cell,
        input_size,
        hidden_size,
        init_hh=init_hh,
        gain=gain,
        forget_bias=forget_bias,
        seed=rng,
    )
    k = check_positive_int("output_size", output_size)
    readout = get_initializer("xavier_uniform").sample(rng, hidden_size, k)
    return RecurrentModel(cell, MappingProxyType(params), readout, np.zeros(k))


@dataclass(frozen=True, eq=False)
class RecurrentGradients:
    r"""The loss of a model on a batch, and the gradient of every parameter.

    Attributes:
        loss: The mean squared error.
        predictions: $\hat y$, shape `(batch, K)`.
        grads: $\partial L / \partial p$ for every parameter, by the names of
            `RecurrentModel.all_params`.
        flow: The engine's `RecurrentFlow` of the batch, with `log10_grad_norms` of
            $\partial L / \partial h_t$ for `t = 0..T`.
    """

    loss: float
    predictions: np.ndarray = field(repr=False)
    grads: Mapping[str, np.ndarray] = field(repr=False)
    flow: RecurrentFlow = field(repr=False)


def recurrent_loss_and_gradients(
    model: RecurrentModel, x: ArrayLike, y: ArrayLike
) -> RecurrentGradients:
    r"""The mean squared error of `model` on `(x, y)`, and its gradients, by one engine pass.

    Args:
        model: A `RecurrentModel`.
        x: Inputs, shape `(T, batch, N)`.
        y: Targets, shape `(batch, K)`.

    Returns:
        A `RecurrentGradients`.

    Raises:
        TypeError: If `model` is not a `RecurrentModel` or an array is not numeric.
        ValueError: If a shape does not fit the model (the message names the argument), or an
            input is not finite.

    Example:
        The gradient of the readout's bias is the mean error times two:

        ```py
        import numpy as np

        from vangrad.recurrent_training import (
            adding_problem,
            make_recurrent_model,
            recurrent_loss_and_gradients,
        )

        x, y = adding_problem(20, 64, seed=1)
        model = make_recurrent_model("rnn_tanh", 2, 8, seed=0)
        result = recurrent_loss_and_gradients(model, x, y)
        error = result.predictions - y
        print(np.isclose(result.loss, np.mean(error**2)))
        #> True
        print(np.allclose(result.grads["readout_bias"], 2 * error.mean(axis=0)))
        #> True
        print(result.flow.log10_grad_norms.shape)
        #> (21,)
        ```
    """
    model = _check_model(model)
    x_array, y_array = _check_data(x, y, model)
    return _loss_and_gradients(model, x_array, y_array)


@dataclass(frozen=True, eq=False)
class RecurrentTrainingResult:
    r"""What `train_recurrent` recorded.

    Attributes:
        model: The model after the last update.
        loss: The mini-batch loss at every step, before that step's update, shape `(steps,)`.
        grad_norm: The norm of the gradient of all the parameters together at every step,
            before clipping, shape `(steps,)`.
        clipped: Whether clipping scaled that step's gradient down, shape `(steps,)`.
        log10_grad_norms: For each step asked for in `record_at`: the engine's
            $\log_{10} \lVert \partial L / \partial h_t \rVert$ on that step's
            mini-batch, for `t = 0..T`, shape `(T + 1,)`.
    """

    model: RecurrentModel
    loss: np.ndarray = field(repr=False)
    grad_norm: np.ndarray = field(repr=False)
    clipped: np.ndarray = field(repr=False)
    log10_grad_norms: Mapping[int, np.ndarray] = field(repr=False)

    @property
    def steps(self) -> int:
        """The number of updates."""
        return self.loss.shape[0]


def train_recurrent(
    model: RecurrentModel,
    x: ArrayLike,
    y: ArrayLike,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    max_norm: float | None = None,
    record_at: Iterable[int] = (),
    seed: int | np.random.Generator = 0,
) -> RecurrentTrainingResult:
    r"""Train `model` with Adam on mini-batches of `(x, y)`; record every step.

    Each step draws `batch_size` distinct sequences at random, computes the loss and every
    gradient with `recurrent_loss_and_gradients`, clips them together to a norm of at most
    `max_norm` if it is given (`vangrad.clip_by_norm`), and updates every parameter by Adam
    with `vangrad.training`'s defaults (`ADAM_BETAS`, `ADAM_EPSILON`). The model passed in is
    not changed.

    Args:
        model: The model to start from (see `make_recurrent_model`).
        x: The training sequences, shape `(T, n, N)`.
        y: Their targets, shape `(n, K)`.
        steps: The number of updates; an integer >= 1.
        batch_size: Sequences per step; an integer from 1 to `n`.
        learning_rate: Adam's step size; a number > 0.
        max_norm: Clip the gradient of all the parameters to this norm; a number > 0, or
            `None` (default) for no clipping.
        record_at: The steps (each in `0..steps - 1`) at which to keep the per-step gradient
            norms $\log_{10} \lVert \partial L / \partial h_t \rVert$.
        seed: An integer >= 0 or a `numpy.random.Generator`, for the mini-batches.

    Returns:
        A `RecurrentTrainingResult`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range or a shape does not fit, or the loss stops
            being finite (the message names the step: lower the learning rate or clip).

    Example:
        An LSTM learns the adding problem over 8 steps:

        ```py
        from vangrad.recurrent_training import adding_problem, make_recurrent_model, train_recurrent

        x, y = adding_problem(8, 512, seed=0)
        model = make_recurrent_model("lstm", 2, 8, forget_bias=1.0, seed=0)
        result = train_recurrent(
            model, x, y, steps=200, batch_size=32, learning_rate=0.03, record_at=[0, 199]
        )
        first, last = result.loss[:20].mean(), result.loss[-20:].mean()
        print(first > 5 * last, sorted(result.log10_grad_norms))
        #> True [0, 199]
        ```
    """
    model = _check_model(model)
    x_array, y_array = _check_data(x, y, model)
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    n = x_array.shape[1]
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the {n} sequences of x, got {batch_size}")
    rule = _check_rule("adam", learning_rate, 0.0, None, None)
    if max_norm is not None:
        max_norm = check_positive_float("max_norm", max_norm)
    recorded = _check_record_at(record_at, steps)
    rng = check_seed(seed)

    params = {name: np.array(value) for name, value in model.all_params().items()}
    first = {name: np.zeros_like(value) for name, value in params.items()}  # Adam's m ...
    second = {name: np.zeros_like(value) for name, value in params.items()}  # ... and s
    loss = np.empty(steps)
    grad_norm = np.empty(steps)
    clipped = np.zeros(steps, dtype=bool)
    log10_grad_norms = {}
    for step in range(steps):
        batch = rng.choice(n, size=batch_size, replace=False)
        result = _loss_and_gradients(_with(model, params), x_array[:, batch], y_array[batch])
        if not math.isfinite(result.loss):
            raise ValueError(
                f"the loss stopped being finite at step {step} (it was {result.loss}): the "
                "updates diverged; lower the learning rate or clip the gradient (max_norm)"
            )
        loss[step] = result.loss
        if step in recorded:
            log10_grad_norms[step] = result.flow.log10_grad_norms
        names = list(result.grads)
        grads = [result.grads[name] for name in names]
        if max_norm is None:
            grad_norm[step] = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
        else:
            grads, grad_norm[step] = clip_by_norm(grads, max_norm)
            clipped[step] = grad_norm[step] > max_norm
        for name, g in zip(names, grads, strict=True):
            params[name] = params[name] - rule.update(g, first[name], second[name], step)
    return RecurrentTrainingResult(
        _with(model, params), loss, grad_norm, clipped, MappingProxyType(log10_grad_norms)
    )


# --- the computation -----------------------------------------------------------------------------


def _loss_and_gradients(model: RecurrentModel, x: np.ndarray, y: np.ndarray) -> RecurrentGradients:
    w_out, b_out = model.readout_weight, model.readout_bias
    kept = {}

    def upstream(h_last: np.ndarray) -> np.ndarray:
        """The readout and the loss, between the engine's two passes: dL/dh_T."""
        predictions = h_last @ w_out + b_out
        d_predictions = 2.0 * (predictions - y) / y.size  # L = mean((y_hat - y)^2)
        kept.update(h=h_last, predictions=predictions, d=d_predictions)
        return d_predictions @ w_out.T

    # A diverged model overflows somewhere: that shows as a loss that is not finite, which
    # train_recurrent reports with its step, rather than as a warning from deep inside.
    with np.errstate(over="ignore", invalid="ignore"):
        flow = backprop_through_time(
            x, model.cell, model.params, upstream=upstream, keep_grads=True
        )
        grads = dict(flow.param_grads)
        grads["readout_weight"] = kept["h"].T @ kept["d"]
        grads["readout_bias"] = kept["d"].sum(axis=0)
        loss = float(np.mean((kept["predictions"] - y) ** 2))
    return RecurrentGradients(loss, kept["predictions"], MappingProxyType(grads), flow)


def _with(model: RecurrentModel, params: Mapping[str, np.ndarray]) -> RecurrentModel:
    """`model` with the parameters `params` (by the names of `all_params`)."""
    layer = {name: value for name, value in params.items() if name not in READOUT}
    return RecurrentModel(
        model.cell, MappingProxyType(layer), params["readout_weight"], params["readout_bias"]
    )


def _check_model(model: object) -> RecurrentModel:
    check_instance("model", model, RecurrentModel, "see make_recurrent_model")
    check_cell(model.cell)
    return model


def _check_data(x: object, y: object, model: RecurrentModel) -> tuple[np.ndarray, np.ndarray]:
    x_array = check_finite_array("x", x, ndim=(3,))
    y_array = check_finite_array("y", y, ndim=(2,))
    if x_array.shape[0] < 1:
        raise ValueError(f"x must hold at least one step, got shape {x_array.shape}")
    if x_array.shape[2] != model.input_size:
        raise ValueError(
            f"x must have shape (T, batch, {model.input_size}) for the model's input_size, "
            f"got {x_array.shape}"
        )
    expected = (x_array.shape[1], model.output_size)
    if y_array.shape != expected:
        raise ValueError(
            f"y must have shape {expected} (x's batch, the model's outputs), got {y_array.shape}"
        )
    return x_array, y_array


def _check_record_at(record_at: object, steps: int) -> frozenset[int]:
    if isinstance(record_at, str) or not isinstance(record_at, Iterable):
        raise TypeError(f"record_at must be a list of steps, got {record_at!r}")
    recorded = set()
    for i, value in enumerate(record_at):
        step = check_positive_int(f"record_at[{i}]", value, minimum=0)
        if step >= steps:
            raise ValueError(f"record_at[{i}] must be a step from 0 to {steps - 1}, got {step}")
        recorded.add(step)
    return frozenset(recorded)
