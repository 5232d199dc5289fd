r"""The recurrent engine: one recurrent layer unrolled over time, and backpropagation through time.

This module is a reference implementation written to be read, in the style of `vangrad.engine`:
a forward loop that keeps one record per time step, and a backward loop that applies the chain
rule to those records, one step per line, each cell's backward step next to its forward step.

Conventions (PyTorch's, so that weights load from `torch.nn.RNN`, `nn.LSTM` and `nn.GRU`, and
results can be checked against them). The input is sequence-first, `x` of shape
`(T, batch, N)`; the hidden state $h_t$ has shape `(batch, H)`, $h_0$ is given (zeros by
default), and step $t = 1, \dots, T$ computes $h_t$ from $x_t$ and $h_{t-1}$. Vectors are
rows, so a weight of PyTorch's shape `(G*H, N)` multiplies as $x_t W^\top$. The gate blocks
are stacked in PyTorch's order: LSTM `i, f, g, o`, GRU `r, z, n` ($G$ = 4, 3; 1 for the plain
cells). With $a_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh}$ split into blocks:

- plain cells: $h_t = \phi(a_t)$ with $\phi$ = tanh, ReLU or the logistic sigmoid;
- LSTM: $i, f, o = \sigma(a^i), \sigma(a^f), \sigma(a^o)$, $g = \tanh(a^g)$,
  $c_t = f \odot c_{t-1} + i \odot g$, $h_t = o \odot \tanh(c_t)$;
- GRU: $r = \sigma(a^r)$, $z = \sigma(a^z)$,
  $n = \tanh(x_t W_{in}^\top + b_{in} + r \odot (h_{t-1} W_{hn}^\top + b_{hn}))$,
  $h_t = (1 - z) \odot n + z \odot h_{t-1}$: the reset gate multiplies the recurrent term
  including its bias.

The gradient. $g_t = \partial L / \partial h_t$ is taken with respect to $h_t$ as a node of the
unrolled graph: everything downstream of $h_t$ counts, nothing upstream of it (for the LSTM,
$c_t$ is held fixed, which is what PyTorch's `retain_grad` on $h_t$ reports). The LSTM's cell
gradient $\partial L / \partial c_t$ is the node gradient of $c_t$: through $h_t$ and through
$c_{t+1}$.

Log space, as in `vangrad.engine`: after every step the running gradient (for the LSTM the pair
$(g_t, \partial L / \partial c_t)$, by their joint norm) is divided by the power of two just
above its norm and the exponent is added to a running scale, so the `log10` norms are exact at
any length. The parameters' gradients sum one term per step, each at its own scale: they are
summed after the loop at the largest of those scales (a term far below it is negligible, and
underflows to 0.0 only where it is below float64's resolution of the sum).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from vangrad._validation import CELLS, check_bool, check_cell
from vangrad.activations import Activation, get_activation, values_and_slopes
from vangrad.flow import (
    binary_exponent,
    frobenius_norms,
    log10_norms,
    overflow_layers,
    rescale,
    unscale,
)
from vangrad.network_checks import (
    check_initial_state,
    check_recurrent_params,
    check_sequence,
    check_upstream,
)

__all__ = ["CELLS", "RecurrentFlow", "Step", "backprop_through_time"]

SIGMOID = get_activation("sigmoid")
TANH = get_activation("tanh")
PLAIN_CELLS = {"rnn_tanh": TANH, "rnn_relu": get_activation("relu"), "rnn_sigmoid": SIGMOID}


@dataclass(frozen=True, eq=False)
class RecurrentFlow:
    r"""What one forward and backward pass through a recurrent layer measured.

    Shapes are for one network; a stack of networks adds a leading `trials` axis to each.
    Time is the last axis of the norms, the third from last of the states and gradients.

    Attributes:
        cell: The cell, one of `CELLS`.
        log10_grad_norms: $\log_{10}$ of the Frobenius norm (over the batch and the units) of
            $g_t = \partial L / \partial h_t$ for $t = 0, \dots, T$, shape `(T + 1,)`; $h_t$ as a
            node of the unrolled graph. Exact at any length; `-inf` only for an exact zero.
        log10_cell_grad_norms: The LSTM only (else `None`): the same for
            $\partial L / \partial c_t$, $t = 0, \dots, T$.
        log10_input_grad_norms: The same for $\partial L / \partial x_t$, $t = 1, \dots, T$,
            shape `(T,)`.
        log10_param_grad_norms: $\log_{10}$ of the norm of each parameter's gradient (summed
            over time), keyed by the parameter's name (`"weight_ih"`, ...), each of shape `()`.
        hidden_states: $h_0, \dots, h_T$, shape `(T + 1, batch, H)`.
        cell_states: The LSTM's $c_0, \dots, c_T$ (else `None`).
        overflow_step: The first step ($1, \dots, T$) at which a state became inf or nan, in
            any trial; `None` if none did. Gradients after an overflow are not meaningful.
        trial_overflow_step: The same per trial (0 where the trial never overflowed).
        grads: With `keep_grads=True`, $g_0, \dots, g_T$, shape `(T + 1, batch, H)`; else `None`.
            Plain floats: they can underflow where the norms do not.
        cell_grads: With `keep_grads=True`, the LSTM's $\partial L / \partial c_t$.
        input_grads: With `keep_grads=True`, $\partial L / \partial x_t$, shape `(T, batch, N)`.
        param_grads: With `keep_grads=True`, each parameter's gradient, shaped like it.
    """

    cell: str
    log10_grad_norms: np.ndarray
    log10_cell_grad_norms: np.ndarray | None
    log10_input_grad_norms: np.ndarray
    log10_param_grad_norms: Mapping[str, np.ndarray]
    hidden_states: np.ndarray = field(repr=False)
    cell_states: np.ndarray | None = field(repr=False)
    overflow_step: int | None
    trial_overflow_step: np.ndarray = field(repr=False)
    grads: np.ndarray | None = field(default=None, repr=False)
    cell_grads: np.ndarray | None = field(default=None, repr=False)
    input_grads: np.ndarray | None = field(default=None, repr=False)
    param_grads: Mapping[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def steps(self) -> int:
        """The sequence length `T`."""
        return self.log10_input_grad_norms.shape[-1]

    @property
    def output(self) -> np.ndarray:
        """$h_T$, shape `(batch, H)`."""
        return self.hidden_states[..., -1, :, :]

    @property
    def grad_norms(self) -> np.ndarray:
        """`10 ** log10_grad_norms`: plain floats, which underflow to 0.0 in long sequences."""
        with np.errstate(under="ignore", over="ignore"):
            return np.power(10.0, self.log10_grad_norms)


def backprop_through_time(
    x: ArrayLike,
    cell: str,
    params: Mapping[str, ArrayLike],
    *,
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    upstream: ArrayLike | Callable[[np.ndarray], ArrayLike] | None = None,
    step_upstream: ArrayLike | Callable[[np.ndarray], ArrayLike] | None = None,
    keep_grads: bool = False,
) -> RecurrentFlow:
    r"""Unroll one recurrent layer over a sequence and back-propagate through time.

    Args:
        x: The input sequence, sequence first: `(T, batch, N)`, with `T >= 1`; or
            `(trials, T, batch, N)` with stacked parameters.
        cell: One of `CELLS`: `"rnn_tanh"`, `"rnn_relu"`, `"rnn_sigmoid"`, `"lstm"`, `"gru"`.
        params: PyTorch's parameters of the layer, by PyTorch's names without the layer
            suffix: `weight_ih` `(G*H, N)`, `weight_hh` `(G*H, H)`, and optionally `bias_ih`
            and `bias_hh` `(G*H,)` (both or neither). Gate blocks in PyTorch's order (LSTM
            `i, f, g, o`; GRU `r, z, n`). With a leading `trials` axis on every one, a stack
            of independent networks runs together.
        h0: $h_0$, shape `(batch, H)` (or `(trials, batch, H)`); default zeros.
        c0: The LSTM's $c_0$, shaped like `h0`; default zeros.
        upstream: $\partial L / \partial h_T$, an array that broadcasts to the shape of $h_T$,
            or a function of $h_T$ that returns it (`lambda h: h - y` for the squared error
            $\tfrac{1}{2} \lVert h_T - y \rVert^2$). Default: ones, the gradient of the sum
            of the elements of $h_T$.
        step_upstream: For a loss on every step (a sequence-to-sequence task): its own
            gradient at $h_1, \dots, h_T$, shape `(T, batch, H)` (or stacked), or a function
            of $h_1, \dots, h_T$ (that shape) that returns it. It is added to what reaches
            each $h_t$ from later steps, and to `upstream` at $h_T$; give `upstream=0` for a
            loss on the steps alone. Default: none, the loss reads $h_T$ only.
        keep_grads: Also return the gradients themselves (see `RecurrentFlow`).

    Returns:
        A `RecurrentFlow`: the norms are float64, states and gradients follow the input dtype.

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: For an unknown `cell`, missing or unknown keys in `params`, shapes that do
            not fit (the message names the parameter and both shapes), `T = 0`, inputs that
            are not finite, or `c0` for a cell other than the LSTM.

    Example:
        A contracting tanh RNN over 2,000 steps: the gradient at $h_0$ is far below float64's
        range, and its `log10` is still exact.

        ```py
        import numpy as np

        from vangrad import backprop_through_time

        rng = np.random.default_rng(0)
        steps, batch, n, h = 2000, 4, 3, 16
        params = {
            "weight_ih": rng.normal(0, 0.3, size=(h, n)),
            "weight_hh": 0.5 * np.linalg.qr(rng.normal(size=(h, h)))[0],  # all singular values 0.5
        }
        flow = backprop_through_time(rng.normal(size=(steps, batch, n)), "rnn_tanh", params)
        print(flow.log10_grad_norms.shape, bool(np.isfinite(flow.log10_grad_norms).all()))
        #> (2001,) True
        print(bool(flow.log10_grad_norms[0] < -300), flow.grad_norms[0])
        #> True 0.0
        print(sorted(flow.log10_param_grad_norms))
        #> ['weight_hh', 'weight_ih']
        ```
    """
    cell = check_cell(cell)
    keep_grads = check_bool("keep_grads", keep_grads)
    checked = check_recurrent_params(params, cell)
    x_array = check_sequence(x, checked)
    stack = np.broadcast_shapes(x_array.shape[:-3], checked["weight_hh"].shape[:-2])
    hidden = checked["weight_hh"].shape[-1]
    state_shape = (*stack, x_array.shape[-2], hidden)
    states = {}
    if c0 is not None and cell != "lstm":
        raise ValueError(f"c0 is the LSTM's initial cell state, but cell={cell!r} has none")
    for name, value in (("h0", h0), ("c0", c0)):
        if value is not None:
            states[name] = check_initial_state(name, value, state_shape)
    dtype = np.result_type(x_array, *checked.values(), *states.values())
    sequence_shape = (*stack, x_array.shape[-3], *state_shape[-2:])

    def initial(name: str) -> np.ndarray:
        value = states.get(name)
        if value is None:
            return np.zeros(state_shape, dtype=dtype)
        return np.broadcast_to(value.astype(dtype, copy=False), state_shape).copy()

    return run_recurrent(
        x_array.astype(dtype, copy=False),
        cell,
        {name: array.astype(dtype, copy=False) for name, array in checked.items()},
        h0=initial("h0"),
        c0=initial("c0") if cell == "lstm" else None,
        upstream=loss_gradient(upstream, state_shape, dtype, name="upstream", at="h_T"),
        step_upstream=loss_gradient(
            step_upstream, sequence_shape, dtype, name="step_upstream", at="h_1..h_T"
        ),
        keep_grads=keep_grads,
    )


def loss_gradient(
    value: object, shape: tuple[int, ...], dtype: np.dtype, *, name: str, at: str
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A gradient of the loss as a checked function of the states `at` it is taken at.

    `value` is an array (checked now) or a function of those states (checked when called,
    after the forward pass); `None` stays `None`.
    """
    if value is None:
        return None
    if callable(value):

        def of_states(states: np.ndarray) -> np.ndarray:
            finite = bool(np.isfinite(states).all())  # else the forward pass overflowed
            return check_upstream(
                value(states), states.shape, dtype, name=f"{name}({at})", finite=finite, output=at
            )

        return of_states
    fixed = check_upstream(value, shape, dtype, name=name, output=at)
    return lambda states: fixed


# --8<-- [start:forward]
@dataclass
class Step:
    """What the backward pass needs of one step `t`, from `h_{t-1}` to `h_t`."""

    h_in: np.ndarray  # h_{t-1}
    values: tuple[np.ndarray, ...]  # the gates' values (the LSTM's i, f, g, o; the GRU's r, z, n)
    slopes: tuple[np.ndarray, ...]  # their derivatives at their pre-activations
    c_in: np.ndarray | None = None  # LSTM: c_{t-1} ...
    tanh_c: tuple[np.ndarray, np.ndarray] | None = None  # ... and tanh(c_t), tanh'(c_t)
    hh_n: np.ndarray | None = None  # GRU: h_{t-1} W_hn^T + b_hn, which the reset gate scales


def plain_step(
    phi: Activation, a_x: np.ndarray, a_h: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, Step]:
    """`h_t = phi(a_x + a_h)`, `a_x = x_t W_ih^T + b_ih`, `a_h = h_{t-1} W_hh^T + b_hh`."""
    h_out, slope = values_and_slopes(phi, a_x + a_h)
    return h_out, Step(h, (h_out,), (slope,))


def plain_step_backward(
    step: Step, g: np.ndarray, w_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From `g = dLoss/dh_t`: `dLoss/dh_{t-1}`, and `dLoss/da_x`, `dLoss/da_h`."""
    da = g * step.slopes[0]  # through h_t = phi(a): dLoss/da = g phi'(a)
    return da @ w_hh, da, da  # a = ... + h_{t-1} W_hh^T: dLoss/dh_{t-1} = da W_hh


def lstm_step(
    a_x: np.ndarray, a_h: np.ndarray, h: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Step]:
    """One LSTM step: `(h_t, c_t)` from `(h_{t-1}, c_{t-1})`."""
    a_i, a_f, a_g, a_o = np.split(a_x + a_h, 4, axis=-1)  # PyTorch's order: i, f, g, o
    i, s_i = values_and_slopes(SIGMOID, a_i)  # input gate
    f, s_f = values_and_slopes(SIGMOID, a_f)  # forget gate
    g, s_g = values_and_slopes(TANH, a_g)  # the candidate cell value
    o, s_o = values_and_slopes(SIGMOID, a_o)  # output gate
    c_out = f * c + i * g  # c_t = f c_{t-1} + i g
    tanh_c, tanh_c_slope = values_and_slopes(TANH, c_out)
    h_out = o * tanh_c  # h_t = o tanh(c_t)
    step = Step(h, (i, f, g, o), (s_i, s_f, s_g, s_o), c, (tanh_c, tanh_c_slope))
    return h_out, c_out, step


def lstm_step_backward(
    step: Step, g_h: np.ndarray, g_c: np.ndarray, w_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """From `g_h = dLoss/dh_t` and `g_c` (what reaches `c_t` through `c_{t+1}`), back one step.

    Returns `dLoss/dh_{t-1}`, the part of `dLoss/dc_{t-1}` through `c_t`, `dLoss/da` and
    `dLoss/dc_t`.
    """
    i, f, g, o = step.values
    s_i, s_f, s_g, s_o = step.slopes
    tanh_c, tanh_c_slope = step.tanh_c
    d_c = g_c + g_h * o * tanh_c_slope  # c_t reaches the loss through c_{t+1} and through h_t
    da = np.concatenate(
        [
            d_c * g * s_i,  # c_t = ... + i g, i = sigmoid(a_i)
            d_c * step.c_in * s_f,  # c_t = f c_{t-1} + ..., f = sigmoid(a_f)
            d_c * i * s_g,  # g = tanh(a_g)
            g_h * tanh_c * s_o,  # h_t = o tanh(c_t), o = sigmoid(a_o)
        ],
        axis=-1,
    )
    return da @ w_hh, d_c * f, da, d_c


def gru_step(a_x: np.ndarray, a_h: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, Step]:
    """One GRU step; the reset gate multiplies `h_{t-1} W_hn^T + b_hn`, bias included."""
    x_r, x_z, x_n = np.split(a_x, 3, axis=-1)  # PyTorch's order: r, z, n
    h_r, h_z, h_n = np.split(a_h, 3, axis=-1)
    r, s_r = values_and_slopes(SIGMOID, x_r + h_r)  # reset gate
    z, s_z = values_and_slopes(SIGMOID, x_z + h_z)  # update gate
    n, s_n = values_and_slopes(TANH, x_n + r * h_n)  # the new candidate
    h_out = (1 - z) * n + z * h  # h_t = (1 - z) n + z h_{t-1}
    return h_out, Step(h, (r, z, n), (s_r, s_z, s_n), hh_n=h_n)


def gru_step_backward(
    step: Step, g: np.ndarray, w_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From `g = dLoss/dh_t`: `dLoss/dh_{t-1}`, and `dLoss/da_x`, `dLoss/da_h`.

    The two differ in the n block, where the reset gate scales the recurrent term.
    """
    r, z, n = step.values
    s_r, s_z, s_n = step.slopes
    d_n = g * (1 - z) * s_n  # through h_t = (1 - z) n + ..., n = tanh(a_n)
    d_r = d_n * step.hh_n * s_r  # a_n = x_n + r (h W_hn^T + b_hn), r = sigmoid(a_r)
    d_z = g * (step.h_in - n) * s_z  # h_t = n + z (h_{t-1} - n), z = sigmoid(a_z)
    da_x = np.concatenate([d_r, d_z, d_n], axis=-1)
    da_h = np.concatenate([d_r, d_z, d_n * r], axis=-1)
    return da_h @ w_hh + g * z, da_x, da_h  # h_{t-1} enters the gates and, directly, h_t


def forward(
    a_x: np.ndarray,
    cell: str,
    *,
    w_hh: np.ndarray,
    b_hh: np.ndarray | None,
    h0: np.ndarray,
    c0: np.ndarray | None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[Step]]:
    """Run the steps from `h_0` (and `c_0`); return every `h_t` and `c_t`, and a `Step` each.

    `a_x` holds `x_t W_ih^T + b_ih` for every step (time on axis -3), computed in one product.
    """
    w_hh_t = np.swapaxes(w_hh, -1, -2)
    h, c, hs, cs, steps = h0, c0, [h0], [c0], []
    for t in range(a_x.shape[-3]):
        a_h = h @ w_hh_t  # h_{t-1} W_hh^T ...
        if b_hh is not None:
            a_h = a_h + b_hh  # ... + b_hh
        if cell == "lstm":
            h, c, step = lstm_step(a_x[..., t, :, :], a_h, h, c)
        elif cell == "gru":
            h, step = gru_step(a_x[..., t, :, :], a_h, h)
        else:
            h, step = plain_step(PLAIN_CELLS[cell], a_x[..., t, :, :], a_h, h)
        hs.append(h)
        cs.append(c)
        steps.append(step)
    return hs, cs, steps


# --8<-- [end:forward]


# --8<-- [start:backward]
@dataclass
class Backward:
    """What `backward` measured: the norms per step, and the terms of the parameters' gradients.

    Lists run from the last step to the first, as the backward pass does.
    """

    log10_grad_norms: list[np.ndarray]  # g_T, ..., g_0
    log10_cell_grad_norms: list[np.ndarray]  # LSTM: dLoss/dc_T, ..., dLoss/dc_0
    da_x: list[np.ndarray]  # dLoss/da_x at step t, at scale scales[...] ...
    da_h: list[np.ndarray]  # ... and dLoss/da_h (the same array except in the GRU)
    scales: list[np.ndarray]  # ... the true values are these times 2**scale
    grads: list[np.ndarray]  # with keep_grads: g_T, ..., g_0 (unscaled)
    cell_grads: list[np.ndarray]  # with keep_grads: the LSTM's dLoss/dc_T, ..., dLoss/dc_0


def backward(
    steps: list[Step],
    cell: str,
    w_hh: np.ndarray,
    upstream: np.ndarray,
    *,
    step_upstream: np.ndarray | None = None,
    keep_grads: bool,
) -> Backward:
    """Back-propagate `upstream = dLoss/dh_T` through the steps, last step first.

    `step_upstream`, if given, holds the loss's own gradient at every `h_1, ..., h_T` (time on
    axis -3), added to what reaches each `h_t` from later steps.
    """
    out = Backward([], [], [], [], [], [], [])

    def record(name: str, gradient: np.ndarray, scale: np.ndarray, norms: np.ndarray) -> None:
        getattr(out, f"log10_{name}_norms").append(log10_norms(norms, scale))
        if keep_grads:
            getattr(out, f"{name}s").append(unscale(gradient, scale))

    if step_upstream is not None:
        upstream = upstream + step_upstream[..., -1, :, :]
    # The true dLoss/dh_t is g * 2**scale, with g of norm between 0.5 and 1.
    norms = frobenius_norms(upstream)
    record("grad", upstream, np.zeros_like(norms, dtype=int), norms)
    g, scale = rescale(upstream, norms)
    g_c = np.zeros_like(g) if cell == "lstm" else None  # the loss reads h_T only, not c_T
    for t in range(len(steps), 0, -1):
        step = steps[t - 1]
        if cell == "lstm":
            g_in, g_c, da_x, d_c = lstm_step_backward(step, g, g_c, w_hh)
            record("cell_grad", d_c, scale, frobenius_norms(d_c))
            da_h = da_x
        elif cell == "gru":
            g_in, da_x, da_h = gru_step_backward(step, g, w_hh)
        else:
            g_in, da_x, da_h = plain_step_backward(step, g, w_hh)
        out.da_x.append(da_x)
        out.da_h.append(da_h)
        out.scales.append(scale)
        if step_upstream is not None and t > 1:  # the loss reads h_{t-1} directly too
            g_in, g_c, scale = add_at_scale(g_in, g_c, scale, step_upstream[..., t - 2, :, :])
        # Log space: record the norm, then divide by the power of two just above it (exact:
        # only exponents change; the LSTM's pair (h, c) by their joint norm, as they run on
        # together) and add that power's exponent to the running scale.
        norms = frobenius_norms(g_in)
        record("grad", g_in, scale, norms)
        joint = norms if g_c is None else np.hypot(norms, frobenius_norms(g_c))
        g, exponent = rescale(g_in, joint)
        if g_c is not None:
            g_c = rescale(g_c, joint)[0]
        scale = scale + exponent
    if g_c is not None:  # c_0 reaches the loss only through c_1
        record("cell_grad", g_c, scale, frobenius_norms(g_c))
    return out


def add_at_scale(
    g: np.ndarray, g_c: np.ndarray | None, scale: np.ndarray, term: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """`g * 2**scale + term`, as `(sum * 2**-common, g_c at that scale, common)`.

    `common` is the larger of `scale` and `term`'s binary exponent: the smaller of the two
    parts is the one that may lose digits, and only where it is negligible.
    """
    norms = frobenius_norms(term)
    common = np.maximum(scale, np.where(norms > 0, binary_exponent(norms), scale))
    g = unscale(g, scale - common) + unscale(term, -common)
    if g_c is not None:
        g_c = unscale(g_c, scale - common)
    return g, g_c, common


def parameter_gradients(
    measured: Backward,
    x: np.ndarray,
    h_in: np.ndarray,
    params: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Each parameter's gradient, summed over the steps, at one scale; and every `dLoss/dx_t`.

    Returns the gradients, their common scale, and `(dLoss/dx_t for every t, their scales)`.

    `x` and `h_in` (every `h_{t-1}`) have time on axis -3. With `a_x = x_t W_ih^T + b_ih`:
    `dLoss/dW_ih = sum_t da_x^T x_t`, `dLoss/db_ih = sum_t sum_batch da_x`, `dLoss/dx_t = da_x
    W_ih`, and the same for `W_hh` with `da_h` and `h_{t-1}`.
    """
    scales = np.stack(measured.scales[::-1], axis=-1)  # (*stack, T)
    common = scales.max(axis=-1)

    def at_common_scale(terms: list[np.ndarray]) -> np.ndarray:
        """The terms, time on axis -3, all multiplied to the common scale (exact or negligible)."""
        stacked = np.stack(terms[::-1], axis=-3)
        return np.ldexp(stacked, (scales - common[..., np.newaxis])[..., np.newaxis, np.newaxis])

    def over_time_and_batch(a: np.ndarray) -> np.ndarray:
        return a.reshape(*a.shape[:-3], -1, a.shape[-1])  # (*stack, T * batch, features)

    da_x = at_common_scale(measured.da_x)
    da_h = da_x if measured.da_h[0] is measured.da_x[0] else at_common_scale(measured.da_h)
    gradients = {
        "weight_ih": np.swapaxes(over_time_and_batch(da_x), -1, -2) @ over_time_and_batch(x),
        "weight_hh": np.swapaxes(over_time_and_batch(da_h), -1, -2) @ over_time_and_batch(h_in),
    }
    if "bias_ih" in params:  # kept as (..., 1, G*H) for the norms
        gradients["bias_ih"] = da_x.sum(axis=(-3, -2))[..., np.newaxis, :]
        gradients["bias_hh"] = da_h.sum(axis=(-3, -2))[..., np.newaxis, :]
    # dLoss/dx_t at each step's own scale: no term is negligible there.
    x_grads = np.stack(measured.da_x[::-1], axis=-3) @ params["weight_ih"][..., np.newaxis, :, :]
    return gradients, common, (x_grads, scales)


# --8<-- [end:backward]


def run_recurrent(
    x: np.ndarray,
    cell: str,
    params: Mapping[str, np.ndarray],
    *,
    h0: np.ndarray,
    c0: np.ndarray | None,
    upstream: Callable[[np.ndarray], np.ndarray] | None,
    step_upstream: Callable[[np.ndarray], np.ndarray] | None,
    keep_grads: bool,
) -> RecurrentFlow:
    """`backprop_through_time` on checked arrays: forward, backward, then the results."""
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh = params.get("bias_ih"), params.get("bias_hh")
    with np.errstate(all="ignore"):  # an overflow is recorded in the result, not warned about
        # x_t W_ih^T + b_ih for every step at once: the input does not depend on the state.
        a_x = x @ np.swapaxes(w_ih, -1, -2)[..., np.newaxis, :, :]
        if b_ih is not None:
            a_x = a_x + b_ih[..., np.newaxis, np.newaxis, :]
        hs, cs, steps = forward(
            a_x,
            cell,
            w_hh=w_hh,
            b_hh=None if b_hh is None else b_hh[..., np.newaxis, :],
            h0=h0,
            c0=c0,
        )
        h_t = hs[-1]  # the sum loss by default: an upstream gradient of ones
        g_t = np.ones_like(h_t) if upstream is None else upstream(h_t)
        g_t = np.broadcast_to(g_t, h_t.shape).astype(h_t.dtype, copy=True)
        hidden_states = np.stack(hs, axis=-3)
        direct = None if step_upstream is None else step_upstream(hidden_states[..., 1:, :, :])
        measured = backward(steps, cell, w_hh, g_t, step_upstream=direct, keep_grads=keep_grads)
        gradients, scale, (x_grads, x_scales) = parameter_gradients(
            measured, x, hidden_states[..., :-1, :, :], params
        )
        x_norms = frobenius_norms(x_grads)
        param_norms = {
            name: log10_norms(frobenius_norms(gradient), scale)
            for name, gradient in gradients.items()
        }
        x_log10_norms = log10_norms(x_norms, x_scales)
    finite = np.stack([np.isfinite(h).all(axis=(-2, -1)) for h in hs[1:]])
    if c0 is not None:
        finite &= np.stack([np.isfinite(c).all(axis=(-2, -1)) for c in cs[1:]])
    overflow_step, trial_overflow_step = overflow_layers(finite)

    def first_to_last(values: list[np.ndarray]) -> np.ndarray:
        return np.stack(values[::-1], axis=-1).astype(np.float64)

    def states_first_to_last(values: list[np.ndarray]) -> np.ndarray:
        return np.stack(values[::-1], axis=-3)

    kept_params = None
    if keep_grads:
        kept_params = {name: unscale(gradient, scale) for name, gradient in gradients.items()}
        for name in ("bias_ih", "bias_hh"):
            if name in kept_params:
                kept_params[name] = kept_params[name][..., 0, :]
    return RecurrentFlow(
        cell=cell,
        log10_grad_norms=first_to_last(measured.log10_grad_norms),
        log10_cell_grad_norms=(
            first_to_last(measured.log10_cell_grad_norms) if cell == "lstm" else None
        ),
        log10_input_grad_norms=x_log10_norms,
        log10_param_grad_norms=MappingProxyType(param_norms),
        hidden_states=hidden_states,
        cell_states=np.stack(cs, axis=-3) if cell == "lstm" else None,
        overflow_step=overflow_step,
        trial_overflow_step=trial_overflow_step,
        grads=states_first_to_last(measured.grads) if keep_grads else None,
        cell_grads=(
            states_first_to_last(measured.cell_grads) if keep_grads and cell == "lstm" else None
        ),
        input_grads=unscale(x_grads, x_scales) if keep_grads else None,
        param_grads=MappingProxyType(kept_params) if kept_params is not None else None,
    )
