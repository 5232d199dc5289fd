r"""Residual blocks with normalisation, as in transformers: where the normalisation goes.

This module is a reference implementation written to be read, in the style of `vangrad.engine`:
a forward loop that keeps one record per block, and a backward loop that applies the chain rule
to those records, one step per line.

Conventions. The residual stream $x_l$ has shape `(batch, d)` (or `(trials, batch, d)` for a
stack of independent networks); $x_0$ is the input. Block $l = 1, \dots, L$ has a branch $F_l$,
without biases: a two-layer MLP $F_l(u) = \phi(u W^{in}_l) W^{out}_l$ of hidden width $m$
(usually $4d$), or softmax self-attention (`branches`), whose $W^{in}_l$ holds the queries',
keys' and values' projections and $W^{out}_l$ the output projection. The block computes one of
three things:

- `placement="pre"` (pre-LN): $x_l = \alpha x_{l-1} + s_l F_l(N(x_{l-1}))$,
- `placement="post"` (post-LN, the original transformer's block):
  $x_l = N(\alpha x_{l-1} + s_l F_l(x_{l-1}))$,
- `placement="none"`: $x_l = \alpha x_{l-1} + s_l F_l(x_{l-1})$, no normalisation at all.

$N$ normalises over the units of each row (`norm="layer"`, LayerNorm, Ba et al. 2016; or
`"rms"`, RMSNorm, Zhang and Sennrich 2019) or over the batch, per unit (`"batch"`). Its learned
gain and shift are at their initial values 1 and 0 and are not parameters here. $\alpha$ is a
constant (1, or DeepNorm's, `deepnorm_constants`); $s_l$ is a scalar parameter per block, the
*branch scale*, whose gradient is measured (ReZero starts it at 0, SkipInit at 0 or a small
value). With `final_norm=True` the output is $N(x_L)$ (pre-LN stacks end with one); the loss
is then a function of that output.

The named blocks of `BLOCKS` set these (`block_settings`): `"pre"`, `"post"`, `"deepnorm"`
(Wang et al. 2022), `"rezero"` (Bachlechner et al. 2020), `"skipinit"` (De and Smith 2020).

Per sample. A sample is a row, or with attention a sequence of `tokens` consecutive rows.
LayerNorm and RMSNorm treat each row on its own and attention mixes only the rows of one
sequence, so a batch of $B$ samples is $B$ separate measurements of one network: the gradient
norms are per sample, and a weight gradient's norm is the one a batch of that sample alone would
give (for a row, an outer product's norm, $\lVert u \rVert \lVert \delta \rVert$; for a
sequence, by its Gram matrices). Batch normalisation couples the samples; its per-sample
weight-gradient norms are each sample's term of the batch's gradient.

Log space, as in `vangrad.engine`: the backward pass is linear in the upstream gradient, so it
is divided by a power of two after every block and the exponents are summed, which keeps the
`log10` norms exact at any depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from vangrad._validation import (
    check_bool,
    check_choice,
    check_finite_array,
    check_loss_or_upstream,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from vangrad.activations import Activation, values_and_slopes
from vangrad.engine import loss_upstream, normalise, normalise_backward
from vangrad.flow import BATCHNORM_EPSILON, frobenius_norms, log10_scale, rescale, unscale
from vangrad.initializers import Initializer, get_initializer
from vangrad.network_checks import (
    check_activation,
    check_batch_for_batchnorm,
    check_input,
    check_upstream,
)

__all__ = [
    "BLOCKS",
    "BRANCHES",
    "NORMS",
    "PLACEMENTS",
    "BlockFlow",
    "backprop_blocks",
    "block_settings",
    "block_weights",
    "deepnorm_constants",
    "normalise_rms",
    "normalise_rms_backward",
    "simulate_blocks",
]

PLACEMENTS = ("pre", "post", "none")
"""Where a block normalises: its branch's input, its sum, or nowhere."""

NORMS = ("layer", "rms", "batch")
"""LayerNorm (over each sample's units), RMSNorm (the same without centring), batch norm."""

BLOCKS = ("pre", "post", "deepnorm", "rezero", "skipinit")
"""The named blocks `simulate_blocks` builds (see `block_settings`)."""

BRANCHES = ("mlp", "attention")
"""What a block's branch is: the two-layer MLP, or softmax self-attention."""


# --8<-- [start:norms]
def normalise_rms(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RMSNorm over the units: `z * s` and `s = 1 / sqrt(mean(z^2) + eps)`, per sample."""
    mean_square = np.mean(z * z, axis=-1, keepdims=True, dtype=np.float64)
    inverse_rms = (1.0 / np.sqrt(mean_square + BATCHNORM_EPSILON)).astype(z.dtype)
    return z * inverse_rms, inverse_rms


def normalise_rms_backward(dy: np.ndarray, y: np.ndarray, inverse_rms: np.ndarray) -> np.ndarray:
    """The chain rule through `normalise_rms`: `dLoss/dz` from `dLoss/dy`.

    `y_j = z_j s` with `s = (mean(z^2) + eps)^(-1/2)`, so `ds/dz_k = -s^3 z_k / n` and
    `dy_j/dz_k = s (delta_jk - y_j y_k / n)` (with eps, `y_k` here is `z_k s`, exactly as
    forward computed it). Hence `dLoss/dz = s * (dy - y * mean(dy * y))`: the component of the
    gradient along the output itself is removed, one direction of `n` (LayerNorm removes two:
    the mean as well).
    """
    projection = np.mean(dy * y, axis=-1, keepdims=True)
    return (dy - y * projection) * inverse_rms


def _normalise(norm: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`N(z)` and its inverse scale (the rest of what the backward pass needs is `N(z)`)."""
    if norm == "rms":
        return normalise_rms(z)
    return normalise(z, axis=-2 if norm == "batch" else -1)


def _normalise_backward(norm: str, dy: np.ndarray, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
    if norm == "rms":
        return normalise_rms_backward(dy, y, scale)
    return normalise_backward(dy, y, scale, -2 if norm == "batch" else -1)


# --8<-- [end:norms]


@dataclass(frozen=True, eq=False)
class BlockFlow:
    r"""What one forward and backward pass through a stack of residual blocks measured.

    Shapes are for one network; a stack of networks adds a leading `trials` axis to each.
    Index 0 of the per-stream arrays is the input $x_0$, index $L$ the last block's output
    $x_L$ (before the final normalisation, if any); index $l - 1$ of the per-block arrays is
    block $l$.

    Attributes:
        placement: `"pre"`, `"post"` or `"none"`.
        norm: `"layer"`, `"rms"` or `"batch"`.
        branches: Each block's branch, `"mlp"` or `"attention"`.
        tokens: The rows of one sample (a sequence's length; 1 without attention).
        log10_grad_norms: $\log_{10} \lVert \partial L / \partial x_l \rVert$ per sample, over
            its rows and units: shape `(samples, L + 1)`, `samples = batch / tokens`.
        log10_w_in_grad_norms: $\log_{10}$ of the Frobenius norm of the gradient of
            $W^{in}_l$ per sample (see the module's *Per sample*): `(samples, L)`.
        log10_w_out_grad_norms: The same for $W^{out}_l$: `(samples, L)`.
        branch_scale_grads: $\partial L / \partial s_l$, summed over the batch: `(L,)`. Plain
            floats (they can underflow in a deep stack).
        stream_rms: The root mean square of $x_l$ over the batch and the units: `(L + 1,)`.
        branch_rms: The root mean square of the branch's contribution $s_l F_l(\cdot)$ to
            block $l$'s sum: `(L,)`.
        output: The network's output, $x_L$ or $N(x_L)$.
        grads: With `keep_grads=True`, $\partial L / \partial x_l$ for $l = 0, \dots, L$.
        w_in_grads, w_out_grads: With `keep_grads=True`, the gradients of the weights (summed
            over the batch).
    """

    placement: str
    norm: str
    branches: tuple[str, ...]
    tokens: int
    log10_grad_norms: np.ndarray
    log10_w_in_grad_norms: np.ndarray
    log10_w_out_grad_norms: np.ndarray
    branch_scale_grads: np.ndarray
    stream_rms: np.ndarray
    branch_rms: np.ndarray
    output: np.ndarray = field(repr=False)
    grads: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    w_in_grads: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    w_out_grads: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    @property
    def depth(self) -> int:
        """The number of blocks `L`."""
        return self.branch_rms.shape[-1]


def backprop_blocks(
    x: ArrayLike,
    w_in: Sequence[ArrayLike],
    w_out: Sequence[ArrayLike],
    *,
    placement: str,
    norm: str = "layer",
    activation: str | Activation = "relu",
    branches: str | Sequence[str] = "mlp",
    tokens: int = 1,
    heads: int = 1,
    skip_scale: float = 1.0,
    branch_scale: ArrayLike = 1.0,
    final_norm: bool = False,
    upstream: ArrayLike | Callable[[np.ndarray], ArrayLike] | None = None,
    loss: str = "random",
    seed: int | np.random.Generator = 0,
    keep_grads: bool = False,
) -> BlockFlow:
    r"""Run a forward and a backward pass through residual blocks; measure every gradient.

    Args:
        x: The input $x_0$, shape `(batch, d)`, or `(trials, batch, d)` with stacked weights.
            With `tokens > 1` the rows are `batch / tokens` sequences of `tokens` consecutive
            rows each.
        w_in: One matrix per block, `(d, m)` (or `(trials, d, m)`): the branch's first layer;
            for attention, the queries', keys' and values' projections side by side, `(d, 3d)`.
        w_out: One matrix per block, `(m, d)` (or `(trials, m, d)`): its second layer; for
            attention, the output projection, `(d, d)`.
        placement: One of `PLACEMENTS` (see the module's conventions).
        norm: One of `NORMS`.
        activation: The MLP's activation, a name from `ACTIVATIONS` (`"relu"`, `"gelu"`, ...)
            or an `Activation`.
        branches: `"mlp"` (default) or `"attention"` for every block, or one per block (a
            transformer layer is an attention block followed by an MLP block). Attention is
            softmax self-attention within each sequence, all positions to all (an encoder's),
            $\mathrm{softmax}(q k^\top / \sqrt{d_h})\, v$ per head, without masks or biases.
        tokens: The rows of one sequence; a sample is a sequence, so the per-sample norms
            are over its rows (an integer >= 1 dividing the batch).
        heads: Attention's heads; an integer >= 1 dividing `d`.
        skip_scale: $\alpha$, multiplying the skip path; a number > 0.
        branch_scale: $s_l$: a number, or one per block (shape `(L,)`, or `(trials, L)`).
        final_norm: Normalise the last block's output, $N(x_L)$, before the loss.
        upstream: $\partial L / \partial(\text{output})$, an array that broadcasts to the
            output's shape, or a function of the output returning it. Default: `loss`'s.
        loss: Used when `upstream` is not given: `"random"` (default), a standard normal
            upstream gradient scaled to the norm of the ones, independent of the network; or
            `"sum"`, the ones, which a LayerNorm at the output removes entirely (its backward
            pass removes each sample's mean over the units), so the gradient is exactly 0.
        seed: For `loss="random"`: an integer >= 0 or a `numpy.random.Generator`.
        keep_grads: Also return the gradients themselves.

    Returns:
        A `BlockFlow`.

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If shapes do not fit (`w_in[l]` must be `(d, m)` and `w_out[l]` `(m, d)`,
            for attention `(d, 3d)` and `(d, d)`), a name is unknown, `tokens` does not
            divide the batch or `heads` the width, `norm="batch"` meets a batch of 1, or
            `"layer"`/`"rms"` a width of 1.

    Example:
        ```py
        import numpy as np

        from vangrad.blocks import backprop_blocks

        rng = np.random.default_rng(0)
        d, m, depth = 8, 32, 3
        w_in = [rng.normal(0, (2 / (d + m)) ** 0.5, (d, m)) for _ in range(depth)]
        w_out = [rng.normal(0, (2 / (d + m)) ** 0.5, (m, d)) for _ in range(depth)]
        x = rng.standard_normal((4, d))
        flow = backprop_blocks(x, w_in, w_out, placement="pre", final_norm=True)
        print(flow.log10_grad_norms.shape, flow.branch_scale_grads.shape)
        #> (4, 4) (3,)
        # ReZero: every branch scale 0, so each block is the identity and the gradient
        # reaches the input unchanged.
        flow = backprop_blocks(x, w_in, w_out, placement="none", branch_scale=0.0)
        print(np.allclose(flow.log10_grad_norms[:, 0], flow.log10_grad_norms[:, -1]))
        #> True
        ```
    """
    placement = check_choice("placement", placement, PLACEMENTS)
    norm = check_choice("norm", norm, NORMS)
    act = check_activation(activation)
    alpha = check_positive_float("skip_scale", skip_scale)
    final_norm = check_bool("final_norm", final_norm)
    keep_grads = check_bool("keep_grads", keep_grads)
    loss = check_loss_or_upstream(loss, upstream, default="random")
    rng = check_seed(seed)
    _check_lists(w_in, w_out)
    kinds = _check_branches(branches, len(w_in))
    ins, outs = _check_block_weights(w_in, w_out, kinds)
    x_array = check_input(x, ins)
    tokens = check_positive_int("tokens", tokens)
    heads = check_positive_int("heads", heads)
    if x_array.shape[-2] % tokens:
        raise ValueError(
            f"tokens={tokens} must divide the batch into whole sequences, got x of shape "
            f"{x_array.shape}"
        )
    if "attention" in kinds and x_array.shape[-1] % heads:
        raise ValueError(
            f"heads={heads} must divide the width d = {x_array.shape[-1]} into equal heads"
        )
    dtype = np.result_type(x_array, *ins, *outs)
    x_array = x_array.astype(dtype, copy=False)
    ins = [w.astype(dtype, copy=False) for w in ins]
    outs = [w.astype(dtype, copy=False) for w in outs]
    stack = np.broadcast_shapes(x_array.shape[:-2], ins[0].shape[:-2])
    scales = _check_branch_scale(branch_scale, len(ins), stack).astype(dtype)
    normalised = placement != "none" or final_norm
    if normalised and norm == "batch":
        check_batch_for_batchnorm(x_array.shape[-2], f"x of shape {x_array.shape}")
    if normalised and norm != "batch" and x_array.shape[-1] < 2:
        raise ValueError(
            f"norm={norm!r} normalises over each sample's units and needs a width d >= 2 "
            f"(over one unit the normalised value is always 0), got x of shape {x_array.shape}"
        )
    output_shape = (*stack, *x_array.shape[-2:])
    if callable(upstream):
        loss_gradient = upstream

        def checked_upstream(y: np.ndarray) -> np.ndarray:
            return check_upstream(loss_gradient(y), y.shape, dtype, name="upstream(output)")

        gradient_of = checked_upstream
    else:
        given = (
            check_upstream(upstream, output_shape, dtype)
            if upstream is not None
            else loss_upstream(loss, output_shape, rng, dtype)
        )

        def gradient_of(y: np.ndarray) -> np.ndarray:
            return np.broadcast_to(np.ones_like(y) if given is None else given, y.shape).copy()

    with np.errstate(all="ignore"):  # an overflow shows in the result as inf or nan
        return _run_blocks(
            np.ascontiguousarray(np.broadcast_to(x_array, output_shape)),
            ins,
            outs,
            act,
            placement=placement,
            norm=norm,
            alpha=alpha,
            scales=scales,
            branches=kinds,
            sequence=(tokens, heads),
            final_norm=final_norm,
            gradient_of=gradient_of,
            keep_grads=keep_grads,
        )


# --8<-- [start:forward]
@dataclass
class Block:
    """What the backward pass needs of one block."""

    branch_in: np.ndarray  # u: N(x_{l-1}) before the branch (pre), else x_{l-1}
    hidden: np.ndarray  # what W_out multiplies: phi(u W_in), or attention's heads joined
    slope: np.ndarray | None  # MLP: phi'(u W_in)
    attention: Attention | None  # attention: its queries, keys, values and weights
    branch: np.ndarray  # F(u) = hidden @ W_out, before the branch scale
    pre_norm: tuple[np.ndarray, np.ndarray] | None  # pre: N(x_{l-1}) and its scale
    post_norm: tuple[np.ndarray, np.ndarray] | None  # post: x_l = N(sum) and its scale


def forward_blocks(
    x: np.ndarray,
    w_in: Sequence[np.ndarray],
    w_out: Sequence[np.ndarray],
    activation: Activation,
    *,
    branches: Sequence[str],
    placement: str,
    norm: str,
    alpha: float,
    scales: np.ndarray,
    sequence: tuple[int, int],
) -> tuple[list[np.ndarray], list[Block]]:
    """Run the blocks from `x_0 = x`; return every `x_l` and a `Block` per block."""
    stream, blocks = [x], []
    for index, (w1, w2) in enumerate(zip(w_in, w_out, strict=True)):
        x_prev = stream[-1]
        pre_norm = post_norm = None
        u = x_prev
        if placement == "pre":  # the branch sees the normalised stream
            pre_norm = _normalise(norm, x_prev)
            u = pre_norm[0]
        slope = attention = None
        if branches[index] == "attention":
            hidden, attention = self_attention(u @ w1, *sequence)
        else:
            hidden, slope = values_and_slopes(activation, u @ w1)
        branch = hidden @ w2  # F(u)
        s = scales[..., index, np.newaxis, np.newaxis]
        x_next = alpha * x_prev + s * branch
        if placement == "post":  # the sum is normalised
            post_norm = _normalise(norm, x_next)
            x_next = post_norm[0]
        blocks.append(Block(u, hidden, slope, attention, branch, pre_norm, post_norm))
        stream.append(x_next)
    return stream, blocks


@dataclass
class Attention:
    """One attention branch's forward values, per head: shape `(..., sequences, heads, T, d_h)`."""

    queries: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    weights: np.ndarray  # softmax(q k^T / sqrt(d_h)) over the keys: (..., heads, T, T)


def self_attention(qkv: np.ndarray, tokens: int, heads: int) -> tuple[np.ndarray, Attention]:
    """Softmax self-attention within each sequence of `tokens` rows, `heads` heads.

    `qkv = u @ W_in` holds the queries, keys and values side by side, `(..., rows, 3d)`;
    returns every head's output joined, `(..., rows, d)`, for `W_out` (the output
    projection) to multiply, and what the backward pass needs.
    """
    q, k, v = (_split_heads(part, tokens, heads) for part in np.split(qkv, 3, axis=-1))
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return _join_heads(weights @ v), Attention(q, k, v, weights)


def _split_heads(a: np.ndarray, tokens: int, heads: int) -> np.ndarray:
    """`(..., rows, d)` to `(..., sequences, heads, tokens, d / heads)`."""
    *stack, rows, d = a.shape
    split = a.reshape(*stack, rows // tokens, tokens, heads, d // heads)
    # Contiguous, for BLAS: numpy multiplies strided stacks of small matrices in a slow loop.
    return np.ascontiguousarray(np.swapaxes(split, -2, -3))


def _join_heads(a: np.ndarray) -> np.ndarray:
    """The inverse of `_split_heads`."""
    *stack, sequences, heads, tokens, width = a.shape
    joined = np.swapaxes(a, -2, -3)
    return joined.reshape(*stack, sequences * tokens, heads * width)


# --8<-- [end:forward]


# --8<-- [start:backward]
def backward_blocks(
    blocks: Sequence[Block],
    w_in: Sequence[np.ndarray],
    w_out: Sequence[np.ndarray],
    g: np.ndarray,
    scale: np.ndarray,
    *,
    norm: str,
    alpha: float,
    scales: np.ndarray,
    tokens: int,
    keep_grads: bool,
) -> dict[str, list[np.ndarray]]:
    """Back-propagate `dLoss/dx_L = g * 2**scale`, top block first; measurements bottom first."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in _MEASURED}
    out["grad"].append(_log10(_sample_norms(g, tokens), scale))
    _keep(out, keep_grads, "grads", g, scale)
    for index in reversed(range(len(blocks))):
        block, w1, w2 = blocks[index], w_in[index], w_out[index]
        s = scales[..., index, np.newaxis, np.newaxis]
        # Through the post-normalisation, x_l = N(sum).
        if block.post_norm is not None:
            g = _normalise_backward(norm, g, *block.post_norm)
        # Through the sum, alpha * x_{l-1} + s * F(u): the branch scale gets F(u) . g ...
        out["branch_scale"].append(_unscale_sum(block.branch * g, scale))
        # ... and the branch's output gets s * g.
        d_branch = s * g
        # Through the second layer, F = hidden @ W_out.
        out["w_out"].append(_outer_norms(block.hidden, d_branch, tokens, scale))
        _keep(out, keep_grads, "w_out_grads", np.swapaxes(block.hidden, -1, -2) @ d_branch, scale)
        d_hidden = d_branch @ np.swapaxes(w2, -1, -2)
        # Through the activation, hidden = phi(u @ W_in), or through attention.
        if block.attention is not None:
            dz = self_attention_backward(d_hidden, block.attention)
        else:
            dz = d_hidden * block.slope
        # Through the first layer, u @ W_in.
        out["w_in"].append(_outer_norms(block.branch_in, dz, tokens, scale))
        _keep(out, keep_grads, "w_in_grads", np.swapaxes(block.branch_in, -1, -2) @ dz, scale)
        du = dz @ np.swapaxes(w1, -1, -2)
        # Through the pre-normalisation, u = N(x_{l-1}).
        if block.pre_norm is not None:
            du = _normalise_backward(norm, du, *block.pre_norm)
        # The skip path and the branch both reach x_{l-1}.
        g_in = alpha * g + du
        # Log space: record the norms, then divide by a power of two (exact).
        out["grad"].append(_log10(_sample_norms(g_in, tokens), scale))
        g, exponent = rescale(g_in, frobenius_norms(g_in))
        scale = scale + exponent
        _keep(out, keep_grads, "grads", g, scale)
    for values in out.values():
        values.reverse()
    return out


def self_attention_backward(d_out: np.ndarray, attention: Attention) -> np.ndarray:
    """The chain rule through `self_attention`: `dLoss/d(qkv)` from `dLoss/d(output)`.

    With `A = softmax(S)` row by row and `S = q k^T / sqrt(d_h)`: `dLoss/dv = A^T dO`,
    `dLoss/dA = dO v^T`, the softmax's `dS = A * (dA - sum(dA * A))` over each row's keys, and
    `dq = dS k / sqrt(d_h)`, `dk = dS^T q / sqrt(d_h)`.
    """
    tokens, heads = attention.queries.shape[-2], attention.queries.shape[-3]
    q, k, v, weights = attention.queries, attention.keys, attention.values, attention.weights
    d_o = _split_heads(d_out, tokens, heads)
    d_v = np.swapaxes(weights, -1, -2) @ d_o
    d_weights = d_o @ np.swapaxes(v, -1, -2)
    d_scores = weights * (d_weights - np.sum(d_weights * weights, axis=-1, keepdims=True))
    d_scores /= np.sqrt(q.shape[-1])
    d_q = d_scores @ k
    d_k = np.swapaxes(d_scores, -1, -2) @ q
    return np.concatenate([_join_heads(d) for d in (d_q, d_k, d_v)], axis=-1)


# --8<-- [end:backward]

_MEASURED = ("grad", "w_in", "w_out", "branch_scale", "grads", "w_in_grads", "w_out_grads")


def _log10(norms: np.ndarray, scale: np.ndarray | int) -> np.ndarray:
    """`log10` of true per-sample norms, `norms * 2**scale` (`scale` per network)."""
    with np.errstate(divide="ignore"):
        return np.log10(norms) + log10_scale(np.asarray(scale)[..., np.newaxis])


def _unscale_sum(a: np.ndarray, scale: np.ndarray | int) -> np.ndarray:
    """The sum of `a * 2**scale` over the batch and the units, per network (it may underflow)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(np.sum(a, axis=(-2, -1)), scale)


def _sample_norms(g: np.ndarray, tokens: int) -> np.ndarray:
    """The norm of each sample's gradient, over its `tokens` rows and its units."""
    *stack, rows, d = g.shape
    return np.linalg.norm(g.reshape(*stack, rows // tokens, tokens * d), axis=-1)


def _outer_norms(a: np.ndarray, b: np.ndarray, tokens: int, scale: np.ndarray | int) -> np.ndarray:
    """Per sample, `log10` of the norm of `a_s^T b_s` (times `2**scale`), `a_s` its rows.

    By the Gram matrices, `|a_s^T b_s|^2 = sum((a_s a_s^T) * (b_s b_s^T))`, without forming
    one weight-sized matrix per sample; for one row per sample it is `|a_s|^2 |b_s|^2`.
    """
    if tokens == 1:
        return _log10(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), scale)
    *stack, rows, _ = a.shape
    a_s = a.reshape(*stack, rows // tokens, tokens, a.shape[-1])
    b_s = b.reshape(*stack, rows // tokens, tokens, b.shape[-1])
    grams = (a_s @ np.swapaxes(a_s, -1, -2)) * (b_s @ np.swapaxes(b_s, -1, -2))
    return _log10(np.sqrt(np.maximum(grams.sum(axis=(-2, -1)), 0.0)), scale)


def _keep(
    out: dict[str, list[np.ndarray]], keep: bool, name: str, g: np.ndarray, scale: np.ndarray
) -> None:
    if keep:
        out[name].append(unscale(g, scale))


def _run_blocks(
    x: np.ndarray,
    w_in: list[np.ndarray],
    w_out: list[np.ndarray],
    activation: Activation,
    *,
    placement: str,
    norm: str,
    alpha: float,
    scales: np.ndarray,
    branches: tuple[str, ...],
    sequence: tuple[int, int],
    final_norm: bool,
    gradient_of: Callable[[np.ndarray], np.ndarray],
    keep_grads: bool,
) -> BlockFlow:
    stream, blocks = forward_blocks(
        x,
        w_in,
        w_out,
        activation,
        branches=branches,
        placement=placement,
        norm=norm,
        alpha=alpha,
        scales=scales,
        sequence=sequence,
    )
    output, final = stream[-1], None
    if final_norm:
        final = _normalise(norm, output)
        output = final[0]
    # Into log space before the final normalisation's backward pass: an upstream gradient
    # far outside the float range loses nothing on the way in.
    g = gradient_of(output)
    g, scale = rescale(g, frobenius_norms(g))
    if final is not None:
        g = _normalise_backward(norm, g, *final)
    measured = backward_blocks(
        blocks,
        w_in,
        w_out,
        g,
        scale,
        norm=norm,
        alpha=alpha,
        scales=scales,
        tokens=sequence[0],
        keep_grads=keep_grads,
    )

    def per_block(values: list[np.ndarray]) -> np.ndarray:
        return np.stack(values, axis=-1).astype(np.float64)

    def rms(a: np.ndarray) -> np.ndarray:
        return np.sqrt(np.mean(np.square(a, dtype=np.float64), axis=(-2, -1)))

    branch = [
        rms(scales[..., i, np.newaxis, np.newaxis] * block.branch) for i, block in enumerate(blocks)
    ]
    return BlockFlow(
        placement=placement,
        norm=norm,
        branches=branches,
        tokens=sequence[0],
        log10_grad_norms=per_block(measured["grad"]),
        log10_w_in_grad_norms=per_block(measured["w_in"]),
        log10_w_out_grad_norms=per_block(measured["w_out"]),
        branch_scale_grads=per_block(measured["branch_scale"]),
        stream_rms=per_block([rms(x_l) for x_l in stream]),
        branch_rms=per_block(branch),
        output=output,
        grads=tuple(measured["grads"]) if keep_grads else None,
        w_in_grads=tuple(measured["w_in_grads"]) if keep_grads else None,
        w_out_grads=tuple(measured["w_out_grads"]) if keep_grads else None,
    )


def _check_lists(w_in: object, w_out: object) -> None:
    """Both weights' arguments are lists (or tuples), one matrix per block each."""
    for name, value in (("w_in", w_in), ("w_out", w_out)):
        if not isinstance(value, list | tuple):
            raise TypeError(
                f"{name} must be a list of arrays, one per block, got {type(value).__name__}"
            )
    if len(w_in) != len(w_out):
        raise ValueError(
            f"w_in and w_out must hold one matrix per block each, got {len(w_in)} and {len(w_out)}"
        )


def _check_branches(branches: object, depth: int) -> tuple[str, ...]:
    """One branch kind per block, from one name or a sequence of them."""
    if isinstance(branches, str):
        return (check_choice("branches", branches, BRANCHES),) * depth
    if not isinstance(branches, list | tuple):
        raise TypeError(
            f"branches must be one of {sorted(BRANCHES)} or a list of them, one per block, "
            f"got {type(branches).__name__}"
        )
    if len(branches) != depth:
        raise ValueError(
            f"branches must name one branch per block: got {len(branches)} for {depth} blocks"
        )
    return tuple(check_choice(f"branches[{i}]", b, BRANCHES) for i, b in enumerate(branches))


def _check_block_weights(
    w_in: object, w_out: object, kinds: tuple[str, ...]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Both lists, one matrix per block, shaped for its branch (stacked alike)."""
    ins = [check_finite_array(f"w_in[{i}]", w, ndim=(2, 3)) for i, w in enumerate(w_in)]
    outs = [check_finite_array(f"w_out[{i}]", w, ndim=(2, 3)) for i, w in enumerate(w_out)]
    if not ins:
        raise ValueError("w_in and w_out must hold at least one block, got empty lists")
    d = ins[0].shape[-2]
    first = ins[0].shape
    for i, (w1, w2, kind) in enumerate(zip(ins, outs, kinds, strict=True)):
        hidden = 3 * d if kind == "attention" else w1.shape[-1]
        joined = d if kind == "attention" else hidden
        for name, w, want in ((f"w_in[{i}]", w1, (d, hidden)), (f"w_out[{i}]", w2, (joined, d))):
            if w.shape[:-2] != first[:-2] or w.shape[-2:] != want or 0 in w.shape:
                stack = f"{first[0]}, " if len(first) == 3 else ""
                what = (
                    "an attention block projects the stream's width d = {d} to queries, keys "
                    "and values (3d) and its heads back to d"
                    if kind == "attention"
                    else "every MLP block takes the stream's width d = {d} to a hidden width "
                    "and back"
                ).format(d=d)
                raise ValueError(
                    f"{name} has shape {w.shape}, expected ({stack}{want[0]}, {want[1]}): "
                    f"{what} (d from w_in[0] of shape {first}), and all are stacked alike"
                )
    return ins, outs


def _check_branch_scale(value: ArrayLike, depth: int, stack: tuple[int, ...]) -> np.ndarray:
    """The branch scales as an array `(*stack, depth)`."""
    array = check_finite_array("branch_scale", value, ndim=(0, 1, 2))
    shapes = [(), (depth,), (*stack, depth)]
    if array.shape not in shapes:
        raise ValueError(
            f"branch_scale must be a number or one per block, shape ({depth},)"
            + (f" or {(*stack, depth)}" if stack else "")
            + f", got shape {array.shape}"
        )
    return np.broadcast_to(array, (*stack, depth)) if array.ndim < 2 else array


def deepnorm_constants(blocks: int) -> tuple[float, float]:
    r"""DeepNorm's skip scale $\alpha$ and branch-weight gain $\beta$ for a stack of `blocks`.

    Wang et al. (2022) give $\alpha = (2N)^{1/4}$ and $\beta = (8N)^{-1/4}$ for an encoder
    of $N$ layers, each of two residual blocks (attention, then the MLP): $2N$ blocks in all.
    In the blocks of this module that is $\alpha = B^{1/4}$ and $\beta = (4B)^{-1/4}$ for
    $B$ = `blocks`, whatever each branch is. $\alpha$ multiplies the skip path of every
    post-LN block, $\beta$ is the gain of the Xavier initialisation of the branch weights
    (the MLP's, and attention's value and output projections; not its queries and keys).

    Example:
        ```py
        from vangrad.blocks import deepnorm_constants

        alpha, beta = deepnorm_constants(16)  # an encoder of 8 layers
        print(round(alpha, 4), round(beta, 4))
        #> 2.0 0.3536
        ```
    """
    n = check_positive_int("blocks", blocks)
    return n**0.25, (4.0 * n) ** -0.25


def block_settings(block: str, depth: int, *, branch_scale: float | None = None) -> dict:
    r"""The settings of a named block (one of `BLOCKS`) for a stack of `depth` blocks.

    Returns a dict with `placement`, `skip_scale`, `branch_scale`, `final_norm` (arguments of
    `backprop_blocks`) and `weight_gain` (the gain of the branch weights' initialisation):

    - `"pre"`: pre-LN with a final normalisation (as in GPT-2 and Xiong et al. 2020).
    - `"post"`: post-LN, the original transformer's block.
    - `"deepnorm"`: post-LN with the skip scaled by $\alpha$ and the branch weights by
      $\beta$ (`deepnorm_constants`).
    - `"rezero"`: no normalisation, branch scale 0 (Bachlechner et al. 2020).
    - `"skipinit"`: no normalisation, branch scale `branch_scale`; De and Smith (2020)
      start it at 0 or at a small constant, below $1/\sqrt{L}$; here it starts at
      $1/\sqrt{L}$, the edge of that range (0 would make it ReZero's block).

    `branch_scale` overrides the named block's own (1 for the normalised blocks, 0 for ReZero).
    """
    block = check_choice("block", block, BLOCKS)
    depth = check_positive_int("depth", depth)
    settings = {
        "placement": "pre",
        "skip_scale": 1.0,
        "branch_scale": 1.0,
        "final_norm": False,
        "weight_gain": 1.0,
    }
    if block == "pre":
        settings["final_norm"] = True
    elif block in ("post", "deepnorm"):
        settings["placement"] = "post"
        if block == "deepnorm":
            settings["skip_scale"], settings["weight_gain"] = deepnorm_constants(depth)
    else:
        settings["placement"] = "none"
        settings["branch_scale"] = 0.0 if block == "rezero" else 1.0 / math.sqrt(depth)
    if branch_scale is not None:
        settings["branch_scale"] = check_nonnegative_float("branch_scale", branch_scale)
    return settings


def block_weights(
    rng: np.random.Generator,
    depth: int,
    width: int,
    *,
    hidden: int | None = None,
    branches: str | Sequence[str] = "mlp",
    init: str | Initializer = "xavier_normal",
    weight_scale: float | None = None,
    trials: int | None = None,
    dtype: type[np.floating] | str = np.float64,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Draw `w_in` and `w_out` for `depth` blocks of `width` units.

    An MLP block gets `(width, hidden)` and `(hidden, width)`, `hidden` defaulting to
    `4 * width`; an attention block its queries', keys' and values' projections, each
    `(width, width)`, side by side, and its output projection. Each matrix is drawn in turn
    from the initialiser; `weight_scale` is its gain (or the standard deviation, for
    `"normal"`) for every matrix but attention's queries and keys, which keep the
    initialiser's own scale, as DeepNorm's beta leaves them (Wang et al. 2022).

    Example:
        ```py
        import numpy as np

        from vangrad.blocks import block_weights

        w_in, w_out = block_weights(np.random.default_rng(0), 2, 8, trials=3)
        print(len(w_in), w_in[0].shape, w_out[0].shape)
        #> 2 (3, 8, 32) (3, 32, 8)
        w_in, w_out = block_weights(np.random.default_rng(0), 2, 8, branches="attention")
        print(w_in[0].shape, w_out[0].shape)
        #> (8, 24) (8, 8)
        ```
    """
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    hidden = 4 * width if hidden is None else check_positive_int("hidden", hidden)
    kinds = _check_branches(branches, depth)
    initializer = get_initializer(init)
    key_scale = weight_scale if initializer.scale_is_std else None

    def draw(fan_in: int, fan_out: int, scale: float | None) -> np.ndarray:
        return initializer.sample(
            rng, fan_in, fan_out, weight_scale=scale, trials=trials, dtype=dtype
        )

    w_in, w_out = [], []
    for kind in kinds:
        if kind == "attention":
            projections = [draw(width, width, key_scale) for _ in range(2)]
            projections.append(draw(width, width, weight_scale))  # the values
            w_in.append(np.concatenate(projections, axis=-1))
            w_out.append(draw(width, width, weight_scale))
        else:
            w_in.append(draw(width, hidden, weight_scale))
            w_out.append(draw(hidden, width, weight_scale))
    return w_in, w_out


def simulate_blocks(
    block: str,
    depth: int,
    width: int,
    *,
    batch_size: int,
    norm: str = "layer",
    activation: str | Activation = "relu",
    hidden: int | None = None,
    attention: bool = False,
    tokens: int = 1,
    heads: int = 1,
    init: str | Initializer = "xavier_normal",
    branch_scale: float | None = None,
    trials: int = 1,
    seed: int | np.random.Generator = 0,
    loss: str = "random",
    keep_grads: bool = False,
) -> BlockFlow:
    """Measure a random stack of `depth` named blocks (one of `BLOCKS`) of `width` units.

    Draws from `np.random.default_rng(seed)` the input `x_0` (standard normal, shape
    `(batch_size * tokens, width)`: `batch_size` samples of `tokens` rows, shared by every
    trial), then the weights (`block_weights`, with the named block's gain: DeepNorm's beta),
    then the random loss's upstream gradient, and runs `backprop_blocks` with the named
    block's settings (`block_settings`). With `attention=True` the blocks alternate, attention
    first, as in a transformer's layers (`depth` counts blocks, two per layer).

    Example:
        ```py
        import numpy as np

        from vangrad.blocks import simulate_blocks

        flow = simulate_blocks("pre", 12, 64, batch_size=8, trials=2)
        # The pre-LN stream grows: its RMS at the top is above the input's 1.
        print(flow.stream_rms.shape, bool(np.all(flow.stream_rms[:, -1] > 1.5)))
        #> (2, 13) True
        flow = simulate_blocks("post", 4, 16, batch_size=2, attention=True, tokens=5, heads=2)
        print(flow.branches, flow.log10_grad_norms.shape)  # per sample: per sequence
        #> ('attention', 'mlp', 'attention', 'mlp') (2, 5)
        ```
    """
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    batch_size = check_positive_int("batch_size", batch_size)
    tokens = check_positive_int("tokens", tokens)
    trials = check_positive_int("trials", trials)
    attention = check_bool("attention", attention)
    settings = block_settings(block, depth, branch_scale=branch_scale)
    initializer = get_initializer(init)
    if initializer.scale_is_std:
        raise ValueError(
            f"simulate_blocks draws from initialisers with a gain; init={initializer.name!r} "
            "needs a standard deviation: draw the weights with block_weights instead"
        )
    gain = settings.pop("weight_gain")
    branches = [("attention", "mlp")[i % 2] if attention else "mlp" for i in range(depth)]
    rng = check_seed(seed)
    x = rng.standard_normal((batch_size * tokens, width))
    stack = None if trials == 1 else trials
    w_in, w_out = block_weights(
        rng,
        depth,
        width,
        hidden=hidden,
        branches=branches,
        init=initializer,
        weight_scale=gain,
        trials=stack,
    )
    return backprop_blocks(
        x,
        w_in,
        w_out,
        norm=norm,
        activation=activation,
        branches=branches,
        tokens=tokens,
        heads=heads,
        loss=loss,
        seed=rng,
        keep_grads=keep_grads,
        **settings,
    )
