"""The fast engine: the reference engine's results, at a fraction of its cost on small layers.

It computes what `vangrad.engine` computes (the tests hold its `log10` norms to the reference's
within 1e-12 in float64) with four optimisations, each measured in `benchmarks/README.md`:

- Groups. Consecutive small layers (fewer than `GROUP_ELEMENTS` outputs) run as a group: per
  layer only the product and the activation, then the slopes, statistics, finiteness checks and
  norms of the whole group in one stacked pass, because numpy's per-call overhead, not
  arithmetic, is their cost. Their backward pass runs unscaled for a chunk of layers, as long as
  the gradient stays far inside the float range, and a chunk that left it is run again layer by
  layer, so the `log10` norms stay exact.
- Threads. A stack of independent networks whose products are too small for BLAS to thread is
  split along its first axis over `VANGRAD_NUM_THREADS` threads (default: one per CPU the
  process may run on), with bitwise the same results as one thread.
- Gram matrices. The norm of a weight gradient `H^T D` comes from `<H H^T, D D^T>` where the
  two batch-by-batch products are cheaper than the product itself (float64 only).
- A slim slope cache. A large plain tanh or sigmoid layer keeps `a` (the next layer's input
  anyway) and only the few slopes that `a` does not give bit for bit, instead of every slope.

Scratch arrays are reused across layers (`_Buffers`): a fresh array costs page faults as
large as the arithmetic that fills it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from vangrad._threads import map_in_threads, thread_count
from vangrad.activations import Activation, conform_to_layer
from vangrad.flow import (
    BATCHNORM_EPSILON,
    SATURATION_THRESHOLD,
    GradientFlow,
    binary_exponent,
    frobenius_norms,
    log10_scale,
    overflow_layers,
    unscale,
)

__all__ = ["BLAS_ONE_THREAD_PRODUCT", "GROUP_ELEMENTS", "run_fast", "weight_grad_flops"]


def _first(a: np.ndarray, axis: int) -> np.ndarray:
    """The first entry of `a` along `axis` (-2 or -1), as a view that keeps the dimension."""
    return a[..., :1, :] if axis == -2 else a[..., :1]


def _normalise_forward(z: np.ndarray, axis: int) -> np.ndarray:
    """Normalise `z` in place over `axis` (-2, the batch, or -1, the units); return `1 / std`.

    `vangrad.engine.normalise`, in place: the same numbers, bit for bit.
    """
    # Centre on the first entry before taking the mean: for identical values the mean is then
    # exactly 0, instead of a rounding error that 1/sqrt(eps) would blow up.
    z -= _first(z, axis)
    # The sums accumulate in float64 (a no-op for float64): in float32 their rounding,
    # amplified by 1/std, made the norms of a 50-layer network drift 3e-5 from float64's.
    z -= z.mean(axis=axis, keepdims=True, dtype=np.float64).astype(z.dtype)
    # The reference's operations, in place where it can: the same numbers, bit for bit.
    variance = np.mean(z * z, axis=axis, keepdims=True, dtype=np.float64)
    variance += BATCHNORM_EPSILON
    inverse_std = np.sqrt(variance, out=variance)
    np.divide(1.0, inverse_std, out=inverse_std)
    inverse_std = inverse_std.astype(z.dtype, copy=False)
    z *= inverse_std
    return inverse_std


def _normalise_backward(
    dz: np.ndarray, z_hat: np.ndarray, inverse_std: np.ndarray, axis: int
) -> None:
    """Turn `dLoss/dz_hat` into `dLoss/dz` in place (`vangrad.engine.normalise_backward`)."""
    # Centred on the first entry first: a gradient equal along the axis gives exactly 0.
    dz -= _first(dz, axis)
    dz -= dz.mean(axis=axis, keepdims=True)
    dz -= z_hat * np.mean(dz * z_hat, axis=axis, keepdims=True)
    dz *= inverse_std


class _Buffers:
    """Scratch arrays reused across layers, so that temporaries cost no fresh memory.

    A new array of a megabyte is new pages for the operating system to fault in (about 1 ms
    per megabyte on these machines, as much as the arithmetic that fills it), and glibc hands
    freed large blocks straight back, so every unpooled temporary pays that cost every layer.
    """

    def __init__(self) -> None:
        self._pool: dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]] = {}

    def take(self, shape: tuple[int, ...], dtype: np.dtype, *busy: np.ndarray) -> np.ndarray:
        """An array of `shape` and `dtype` (contents undefined) that is none of `busy`."""
        arrays = self._pool.setdefault((shape, np.dtype(dtype)), [])
        for array in arrays:
            if not any(array is other for other in busy):
                return array
        array = np.empty(shape, dtype)
        arrays.append(array)
        return array


def _stack_of(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    """The stack shape of `a @ b`; the common cases without `np.broadcast_shapes`.

    `np.broadcast_shapes` costs microseconds a call, which add up over the layers of the small
    networks where the engine is bound by per-call overhead.
    """
    if a.shape[:-2] == b.shape[:-2] or b.ndim == 2:
        return a.shape[:-2]
    if a.ndim == 2:
        return b.shape[:-2]
    return np.broadcast_shapes(a.shape[:-2], b.shape[:-2])


def _affine(
    h: np.ndarray,
    w: np.ndarray,
    gain: np.ndarray | None,
    bias: np.ndarray | None,
    stack: tuple[int, ...],
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`z = gain * (h @ w) + bias`, in place on the product where it already has the stack shape.

    `out`, if given, receives the product when it has the product's shape.
    """
    shape = (*_stack_of(h, w), h.shape[-2], w.shape[-1])
    z = np.matmul(h, w, out=out if out is not None and out.shape == shape else None)
    for term, combine in ((gain, np.multiply), (bias, np.add)):
        if term is None:
            continue
        if z.shape[:-2] == stack:
            combine(z, term, out=z)
        else:  # the first layer of a stack made by the gain (or the biases) alone
            z = combine(z, term)
    return z


def _all_finite(
    a: np.ndarray, stack: tuple[int, ...], sums: np.ndarray | None = None
) -> np.ndarray:
    """Whether every entry of each network's `a` is finite.

    A finite sum means finite entries (an inf or nan entry makes the sum inf or nan), so one
    reduction answers the common case without a boolean temporary; only where a sum is not
    finite (a non-finite entry, or a sum of finite entries that overflowed) are the entries
    looked at one by one. `sums`, if given, are `a.sum(axis=(-2, -1))`, already computed.
    """
    if sums is None:
        sums = a.sum(axis=(-2, -1))
    finite = np.isfinite(sums)
    if not finite.all():
        finite = np.isfinite(a).all(axis=(-2, -1))
    return np.broadcast_to(finite, stack)


def _layer_statistics(
    a: np.ndarray, d: np.ndarray, threshold: float, buffers: _Buffers
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the sums, mean, std and saturated fraction of one layer, per network.

    The same operations as `a.mean()`, `a.std()` and `(abs(d) < threshold).mean()` over the
    last two axes (so the same numbers, bit for bit), but the sum serves both the mean and the
    finiteness check, and the temporaries live in reused buffers.
    """
    axes = (-2, -1)
    count = a.shape[-2] * a.shape[-1]
    sums = a.sum(axis=axes)
    mean = sums / count
    work = buffers.take(a.shape, a.dtype)
    np.subtract(a, mean[..., np.newaxis, np.newaxis], out=work)
    np.multiply(work, work, out=work)
    std = np.sqrt(work.sum(axis=axes) / count)
    below = buffers.take(d.shape, np.dtype(bool))
    np.less(np.abs(d, out=work) if d.dtype == a.dtype else np.abs(d), threshold, out=below)
    saturated = np.count_nonzero(below, axis=axes) / count
    return sums, mean, std, saturated


def _activate(
    activation: Activation, z: np.ndarray, dtype: np.dtype, *, z_is_scratch: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`a = phi(z)` and `phi'(z)` (from `a` where that is exact), neither sharing z's memory."""
    if activation.slope_from_value is not None:
        a = activation.function(z)
        d = activation.slope_from_value(a)
    else:
        a, d = activation.value_and_derivative(z)
    if np.shape(a) != z.shape or np.shape(d) != z.shape:  # e.g. a constant derivative
        a = conform_to_layer(activation, "function", a, z).astype(dtype, copy=False)
        d = conform_to_layer(activation, "derivative", d, z).astype(dtype, copy=False)
    elif d is z or d is a:  # the backward pass overwrites d; keep z and a intact
        d = d.copy()
    # A custom activation may return z itself (or a view): z's buffer is reused next layer.
    if z_is_scratch and np.may_share_memory(a, z):
        a = a.copy()
    if z_is_scratch and np.may_share_memory(d, z):
        d = d.copy()
    return a, d


GROUP_ELEMENTS = 1 << 12
"""Consecutive layers of one shape whose outputs hold fewer elements than this, together, run
as a group: the forward loop then does only the matrix product and the activation per layer,
and the derivatives, statistics, finiteness checks and norms are computed once per group, over
the stacked layers. For small layers the cost is numpy's per-call overhead, not arithmetic: 200
sigmoid layers of 16 went from 27.6 ms to 7.9 ms. A layer of more than half this many outputs
always runs alone (the one-layer schedule)."""

_RANGE_FRACTION = 0.4
"""Within a chunk the running gradient may drift this fraction of the dtype's decades from norm
1 (123 decades in float64, 15 in float32): far inside the range, so that no entry that matters
is lost to underflow, and its squares (for the norm) stay finite too."""


def _plan_groups(
    x_shape: tuple[int, ...], weights: Sequence[np.ndarray], stack: tuple[int, ...]
) -> list[range]:
    """Split the layers into runs of equal shapes that together stay under `GROUP_ELEMENTS`."""
    rows = math.prod(stack) * x_shape[-2]  # a layer's output has rows * n_l elements
    groups: list[range] = []
    start, elements, key = 0, 0, None
    for layer, w in enumerate(weights):
        input_shape = x_shape if layer == 0 else (*stack, x_shape[-2], w.shape[-2])
        size = rows * w.shape[-1]
        layer_key = (w.shape, input_shape)
        if layer > start and (layer_key != key or elements + size > GROUP_ELEMENTS):
            groups.append(range(start, layer))
            start, elements = layer, 0
        key = layer_key
        elements += size
    groups.append(range(start, len(weights)))
    return groups


def _bottom_first(per_layer: np.ndarray) -> np.ndarray:
    """Values per layer, top layer first on the first axis, as `(..., layers)` bottom first."""
    return _layers_last(per_layer[::-1])


def _layers_last(per_layer: np.ndarray) -> np.ndarray:
    """Move the first axis (the layers) last: `(layers, *stack)` to `(*stack, layers)`."""
    # transpose, not np.moveaxis: the same view, without microseconds of axis bookkeeping.
    return per_layer.transpose((*range(1, per_layer.ndim), 0))


def _stacked(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays stacked on a new first axis; a view, not a copy, for a single array."""
    if len(arrays) == 1:
        return arrays[0][np.newaxis]
    # Equal shapes (a group's layers): concatenate and reshape is np.stack's result at a
    # third of its cost, which is Python-level bookkeeping per array.
    return np.concatenate(arrays).reshape(len(arrays), *arrays[0].shape)


def run_fast(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    activation: Activation,
    *,
    biases: Sequence[np.ndarray] | None = None,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool | str = False,
    upstream: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
    keep_grads: bool = False,
    gain: np.ndarray | None = None,
    measure_weight_grads: bool = True,
) -> GradientFlow:
    """`vangrad.engine.run_network` by the fast engine: the same arguments and results."""
    gain_shape = () if gain is None else gain.shape
    stack = np.broadcast_shapes(x.shape[:-2], *(w.shape[:-2] for w in weights), gain_shape)
    arguments = {
        "biases": biases,
        "batchnorm": batchnorm,
        "layernorm": layernorm,
        "residual": residual,
        "upstream": upstream,
        "keep_grads": keep_grads,
        "gain": gain,
        "measure_weight_grads": measure_weight_grads,
    }
    parts = _thread_parts(x, weights, stack, upstream=upstream, keep_grads=keep_grads)
    if parts > 1:
        return _run_in_threads(
            x, weights, activation, stack=stack, parts=parts, arguments=arguments
        )
    return _run_stack(x, weights, activation, stack, **arguments)


BLAS_ONE_THREAD_PRODUCT = 1 << 18
"""Below this many multiply-adds a product runs on one thread in OpenBLAS (its own threshold
is about 64^3), so threads over the stack do not compete with BLAS's own threads."""


def _thread_parts(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    stack: tuple[int, ...],
    *,
    upstream: object,
    keep_grads: bool,
) -> int:
    """Into how many parts to split a stack of networks, one per thread (1: do not split).

    Worth it for stacks of networks whose layers are too large for the grouped schedule (whose
    cost is per-call overhead, under the GIL) and whose products are too small for BLAS to
    thread. Not for a callable upstream, which may not be per network, nor with `keep_grads`.
    """
    if not stack or stack[0] < 2 or keep_grads or callable(upstream):
        return 1
    workers = min(thread_count(), stack[0])
    if workers < 2:
        return 1
    batch = x.shape[-2]
    if any(batch * w.shape[-2] * w.shape[-1] > BLAS_ONE_THREAD_PRODUCT for w in weights):
        return 1
    # The smallest part must run the one-layer schedule, as the whole stack does: then every
    # number is bitwise what one thread gives.
    smallest = stack[0] // workers * math.prod(stack[1:])
    per_layer = smallest * batch * min(w.shape[-1] for w in weights)
    return workers if per_layer >= GROUP_ELEMENTS else 1


def _run_in_threads(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    activation: Activation,
    *,
    stack: tuple[int, ...],
    parts: int,
    arguments: dict[str, object],
) -> GradientFlow:
    """Split the stack along its first axis, run each part on a thread, join the results."""

    def run_part(start: int, stop: int) -> GradientFlow:
        def part(a: np.ndarray | None, core: int) -> np.ndarray | None:
            # `a` along the stack's first axis, unless it broadcasts along that axis.
            if a is None or a.ndim - core < len(stack) or a.shape[0] == 1:
                return a
            return a[start:stop]

        biases = arguments["biases"]
        return _run_stack(
            part(x, 2),
            [part(w, 2) for w in weights],
            activation,
            (stop - start, *stack[1:]),
            **{
                **arguments,
                "gain": part(arguments["gain"], 0),
                "upstream": part(arguments["upstream"], 2),
                "biases": None if biases is None else [part(b, 2) for b in biases],
            },
        )

    bounds = np.linspace(0, stack[0], parts + 1).astype(int).tolist()
    flows = map_in_threads(run_part, list(itertools.pairwise(bounds)))

    def joined(name: str) -> np.ndarray | None:
        values = [getattr(flow, name) for flow in flows]
        return None if values[0] is None else np.concatenate(values)

    overflows = [flow.overflow_layer for flow in flows if flow.overflow_layer is not None]
    return GradientFlow(
        log10_grad_norms=joined("log10_grad_norms"),
        log10_weight_grad_norms=joined("log10_weight_grad_norms"),
        activation_mean=joined("activation_mean"),
        activation_std=joined("activation_std"),
        saturated_fraction=joined("saturated_fraction"),
        overflow_layer=min(overflows) if overflows else None,
        trial_overflow_layer=joined("trial_overflow_layer"),
        output=joined("output"),
        activation=activation,
        batchnorm=flows[0].batchnorm,
        layernorm=flows[0].layernorm,
        residual=flows[0].residual,
        log10_bias_grad_norms=joined("log10_bias_grad_norms"),
    )


def _run_stack(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    activation: Activation,
    stack: tuple[int, ...],
    *,
    biases: Sequence[np.ndarray] | None = None,
    batchnorm: bool = False,
    layernorm: bool = False,
    residual: bool | str = False,
    upstream: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
    keep_grads: bool = False,
    gain: np.ndarray | None = None,
    measure_weight_grads: bool = True,
) -> GradientFlow:
    """`run_fast` on one thread."""
    dtype = x.dtype
    gain_array = None if gain is None else gain.astype(dtype)[..., np.newaxis, np.newaxis]
    groups = _plan_groups(x.shape, weights, stack)
    buffers = _Buffers()
    forward = _Forward(
        weights,
        activation,
        biases=biases,
        norm_axis=-2 if batchnorm else -1 if layernorm else None,
        residual=residual,
        gain=gain_array,
        stack=stack,
        keep_inputs=measure_weight_grads,
        buffers=buffers,
    )
    with np.errstate(all="ignore"):
        h = x
        for group in groups:
            h = forward.run_group(h, group)
        if callable(upstream):
            upstream = upstream(h)
        backward = _Backward(
            h.shape,
            upstream,
            dtype,
            weights=weights,
            has_biases=biases is not None,
            forward=forward,
            keep_grads=keep_grads,
            buffers=buffers,
        )
        for group in reversed(groups):
            backward.run_group(group)

    overflow_layer, trial_overflow = overflow_layers(forward.finite)
    return GradientFlow(
        log10_grad_norms=backward.log10_grads,
        log10_weight_grad_norms=backward.log10_weight_grads,
        activation_mean=forward.mean,
        activation_std=forward.std,
        saturated_fraction=forward.saturated,
        overflow_layer=overflow_layer,
        trial_overflow_layer=trial_overflow,
        output=h,
        activation=activation,
        batchnorm=batchnorm,
        layernorm=layernorm,
        residual=residual,
        grads=tuple(reversed(backward.grads)) if keep_grads else None,
        weight_grads=tuple(reversed(backward.w_grads))
        if keep_grads and measure_weight_grads
        else None,
        log10_bias_grad_norms=backward.log10_bias_grads,
        bias_grads=(
            tuple(reversed(backward.b_grads)) if keep_grads and biases is not None else None
        ),
    )


class _GroupArrays:
    """A group's per-layer arrays, as the forward loop makes them."""

    __slots__ = ("inverse_stds", "outputs", "values", "zs")

    def __init__(self) -> None:
        self.zs: list[np.ndarray] = []
        self.values: list[np.ndarray] = []  # a_l
        self.outputs: list[np.ndarray] = []  # h_l, with residual connections (else a_l)
        self.inverse_stds: list[np.ndarray] = []  # with batch or layer normalisation


class _Forward:
    """The forward pass, group by group; it keeps what the backward pass reads, per layer.

    A group of one layer computes `phi` and `phi'` together (one `exp` serves both for tanh and
    sigmoid) and reuses a scratch buffer for `z`. A group of several small layers computes only
    the product and `phi` in its loop, then every `phi'`, statistic and finiteness check at once
    over the stacked layers.
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        activation: Activation,
        *,
        biases: Sequence[np.ndarray] | None,
        norm_axis: int | None,
        residual: bool | str,
        gain: np.ndarray | None,
        stack: tuple[int, ...],
        keep_inputs: bool,
        buffers: _Buffers,
    ) -> None:
        depth = len(weights)
        self.weights = weights
        self.activation = activation
        self.biases = biases
        # The axis each z_l is normalised over: -2 (batch norm), -1 (layer norm), or None.
        self.norm_axis = norm_axis
        self.residual = residual
        self.gain = gain
        self.stack = stack
        self.buffers = buffers
        self.keep_inputs = keep_inputs
        self.inputs: list[np.ndarray | None] = [None] * depth  # h_{l-1}, for dLoss/dW_l
        # phi'(z_l); or, where `from_value[l]`, a_l, whose slope the backward pass derives.
        self.slopes: list[np.ndarray | None] = [None] * depth
        self.from_value = [False] * depth
        # Where `from_value[l]` rests on an approximate slope: the flat indices, and the exact
        # slopes, of the entries where the approximation is not exact.
        self.exceptions: list[tuple[np.ndarray, np.ndarray] | None] = [None] * depth
        self.normalised: list[tuple[np.ndarray, np.ndarray] | None] = [None] * depth
        self.mean = np.empty((*stack, depth))
        self.std = np.empty((*stack, depth))
        self.saturated = np.empty((*stack, depth))
        self.finite = np.empty((depth, *stack), dtype=bool)

    def run_group(self, h: np.ndarray, group: range) -> np.ndarray:
        """Run the layers of `group` from their input `h`; return the group's output."""
        arrays = _GroupArrays()
        if len(group) == 1:
            h, d = self._run_single(h, group.start, arrays)
            z_all, a_all, d_all = arrays.zs[0][np.newaxis], arrays.values[0][np.newaxis], d[None]
            self._slim_slopes(group.start, arrays.values[0], d)
        else:
            h = self._run_many(h, group, arrays)
            z_all, a_all = _stacked(arrays.zs), _stacked(arrays.values)
            d_all = self._slopes(z_all, a_all)
            for i, layer in enumerate(group):
                self.slopes[layer] = d_all[i]
        self._record(
            group,
            z_all=z_all,
            a_all=a_all,
            d_all=d_all,
            inverse_stds=arrays.inverse_stds,
            outputs=arrays.outputs,
        )
        return h

    def _slim_slopes(self, layer: int, a: np.ndarray, d: np.ndarray) -> None:
        """Cache `a` and the few slopes that `a` cannot give exactly, instead of every slope.

        Only for a plain layer (its `a` is the next layer's input, cached anyway), and only
        where at most a quarter of the entries need their exact slope kept.
        """
        approximate = self.activation.approximate_slope_from_value
        normalised = self.norm_axis is not None
        if approximate is None or self.residual or normalised or not self.keep_inputs:
            return
        if self.from_value[layer] or a.shape != d.shape or a.dtype != d.dtype:
            return
        # Keep the slopes wherever the value does not give them bit for bit: the result is then
        # the same as with every slope cached, whichever way this decision goes.
        inexact = np.flatnonzero(approximate(a) != d)
        if inexact.size > a.size // 4:
            return
        self.slopes[layer] = a
        self.from_value[layer] = True
        self.exceptions[layer] = (inexact, d.reshape(-1)[inexact])

    def _run_single(
        self,
        h: np.ndarray,
        layer: int,
        arrays: _GroupArrays,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One large layer: `phi` and `phi'` together, `z` in a reused buffer. Returns h, phi'."""
        w = self.weights[layer]
        if self.keep_inputs:
            self.inputs[layer] = h
        # Without normalisation z is read once, by the activation: a reused buffer.
        axis = self.norm_axis
        scratch = None
        if axis is None:
            scratch = self.buffers.take((*self.stack, h.shape[-2], w.shape[-1]), h.dtype)
        bias = None if self.biases is None else self.biases[layer]
        z = _affine(h, w, self.gain, bias, self.stack, out=scratch)
        if axis is not None:
            arrays.inverse_stds.append(_normalise_forward(z, axis))
            self.normalised[layer] = (z, arrays.inverse_stds[-1])
        scratch_z = axis is None
        if self.residual == "post":  # the input joins before the activation: a new array
            z, scratch_z = h + z, False
        a, d = _activate(self.activation, z, h.dtype, z_is_scratch=scratch_z)
        from_value = self.activation.slope_from_value is not None
        self.slopes[layer] = a if from_value else d
        self.from_value[layer] = from_value
        arrays.zs.append(z)
        arrays.values.append(a)
        h = h + a if self.residual is True else a
        arrays.outputs.append(h)
        return h, d

    def _run_many(
        self,
        h: np.ndarray,
        group: range,
        arrays: _GroupArrays,
    ) -> np.ndarray:
        """Small layers: only the product and `phi` per layer, in as few calls as possible."""
        function, weights, inputs = self.activation.function, self.weights, self.inputs
        keep, residual, axis = self.keep_inputs, self.residual, self.norm_axis
        plain = self.gain is None and self.biases is None
        zs, values, outputs, inverse_stds = (
            arrays.zs,
            arrays.values,
            arrays.outputs,
            arrays.inverse_stds,
        )
        for layer in group:
            if keep:
                inputs[layer] = h
            if plain:
                z = np.matmul(h, weights[layer])
            else:
                bias = None if self.biases is None else self.biases[layer]
                z = _affine(h, weights[layer], self.gain, bias, self.stack)
            if axis is not None:
                inverse_stds.append(_normalise_forward(z, axis))
                self.normalised[layer] = (z, inverse_stds[-1])
            if residual == "post":  # the input joins before the activation
                z = h + z
            a = function(z)
            if np.shape(a) != z.shape:  # a custom activation that returned a scalar
                a = conform_to_layer(self.activation, "function", a, z)
            zs.append(z)
            values.append(a)
            if residual is True:
                h = h + a
                outputs.append(h)
            else:
                h = a
        return h

    def _slopes(self, z_all: np.ndarray, a_all: np.ndarray) -> np.ndarray:
        """`phi'` of the stacked layers of a group, from `a` where that is exact."""
        activation = self.activation
        if activation.slope_from_value is not None:
            return activation.slope_from_value(a_all)
        d_all = activation.derivative(z_all)
        if np.shape(d_all) != z_all.shape:  # e.g. a constant derivative
            return conform_to_layer(activation, "derivative", d_all, z_all)
        return d_all

    def _record(
        self,
        group: range,
        *,
        z_all: np.ndarray,
        a_all: np.ndarray,
        d_all: np.ndarray,
        inverse_stds: list[np.ndarray],
        outputs: list[np.ndarray],
    ) -> None:
        """The statistics and finiteness of a group's layers, from their stacked arrays."""
        group_stack = (len(group), *self.stack)
        threshold = SATURATION_THRESHOLD * self.activation.derivative_max
        sums, mean, std, saturated = _layer_statistics(a_all, d_all, threshold, self.buffers)
        span = slice(group.start, group.stop)
        self.mean[..., span] = _layers_last(mean)
        self.std[..., span] = _layers_last(std)
        self.saturated[..., span] = _layers_last(saturated)
        ok = _all_finite(z_all, group_stack)
        if inverse_stds:
            ok = ok & _all_finite(_stacked(inverse_stds), group_stack)
        if self.residual is True:
            ok = ok & _all_finite(_stacked(outputs), group_stack)
        else:
            ok = ok & _all_finite(a_all, group_stack, sums)
        self.finite[span] = ok


class _Backward:
    """The backward pass in log space, run group by group from the top.

    The true gradient `dLoss/dh_l` is `g * 2**scale`. A single-layer group rescales `g` after
    its layer, as the norms are measured (by a power of two: see `vangrad.flow.rescale`).
    Within a group of small layers `g` runs unscaled for a chunk of layers, short enough that
    it stays well inside the dtype's range (the chunk length follows the decay measured so
    far), and the chunk's norms are then measured at once from the stacked arrays. A chunk
    that left the range anyway is run again layer by layer, so the result is the same as with
    a rescale at every layer.
    """

    def __init__(
        self,
        output_shape: tuple[int, ...],
        upstream: np.ndarray | None,
        dtype: np.dtype,
        *,
        weights: Sequence[np.ndarray],
        has_biases: bool,
        forward: _Forward,
        keep_grads: bool,
        buffers: _Buffers,
    ) -> None:
        depth = len(weights)
        stack = output_shape[:-2]
        self.transposed = [np.swapaxes(w, -1, -2) for w in weights]
        self.forward = forward
        self.keep_grads = keep_grads
        self.buffers = buffers
        self.log10_grads = np.empty((*stack, depth + 1))
        self.log10_weight_grads = np.full((*stack, depth), np.nan)
        self.log10_bias_grads = np.empty((*stack, depth)) if has_biases else None
        self.grads: list[np.ndarray] = []
        self.w_grads: list[np.ndarray] = []
        self.b_grads: list[np.ndarray] = []
        # A C-ordered copy, of the full shape: the pass writes into g in place, through flat
        # views.
        g = (
            np.ones(output_shape, dtype)
            if upstream is None
            else np.array(np.broadcast_to(upstream, output_shape), dtype, order="C")
        )
        self.dtype = dtype
        norms = frobenius_norms(g)
        self.log10_grads[..., depth] = np.log10(norms)
        if keep_grads:
            self.grads.append(g.copy())
        # The true gradient is g * 2**scale (see vangrad.flow.rescale); exact, in place.
        self.scale = binary_exponent(norms)
        np.ldexp(g, -self.scale[..., np.newaxis, np.newaxis], out=g)
        self.norms = norms  # of the running gradient, before its rescaling
        self.g = g
        self.window = _RANGE_FRACTION * float(np.log10(np.finfo(self.dtype).max))
        self.broken = ~forward.finite.all(axis=0)  # networks whose forward pass overflowed
        self.chunk = 8  # layers per chunk in a group, until the measured decay says otherwise

    def run_group(self, group: range) -> None:
        """Back-propagate through the layers of `group`, top layer first."""
        if len(group) == 1:
            self._record(group, *self._propagate(group, in_place=True), check=False)
            return
        top = group.stop
        while top > group.start:
            chunk = range(max(group.start, top - self.chunk), top)
            # A chunk of one layer rescales after its layer: nothing to check, nothing to redo.
            check = len(chunk) > 1
            if not self._record(chunk, *self._propagate(chunk, in_place=False), check=check):
                for layer in reversed(chunk):
                    single = range(layer, layer + 1)
                    self._record(single, *self._propagate(single, in_place=False), check=False)
                # Shorter chunks next; a gradient that died in this chunk is 0 from now on,
                # which the next chunks pass, so they grow again (see _adapt).
                self.chunk = max(1, len(chunk) // 2)
            top = chunk.start

    def _propagate(
        self, chunk: range, *, in_place: bool
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Back-propagate `self.g` through `chunk`, top layer first.

        Returns, top layer first, the gradients below each layer, the `dLoss/dz`s (if the
        weight gradients are wanted) and the bias gradients (if the network has biases).
        Without `in_place` nothing is changed, so the chunk can be run again; with it, the
        products go to reused buffers and the cached slopes (and `self.g`) are overwritten.
        """
        forward, buffers = self.forward, self.buffers
        residual, gain = forward.residual, forward.gain
        has_biases = self.log10_bias_grads is not None
        g = self.g
        gs: list[np.ndarray] = []
        dzs: list[np.ndarray] = []
        dbs: list[np.ndarray] = []
        for layer in reversed(chunk):
            dz = self._local_gradient(g, layer, in_place)
            normalised = forward.normalised[layer] is not None
            # With residual="post" the dz of the sum h_in + z_l reaches h_in directly, before
            # the normalisation's backward pass changes dz in place.
            dz_sum = (dz.copy() if normalised else dz) if residual == "post" else None
            if normalised:
                _normalise_backward(dz, *forward.normalised[layer], forward.norm_axis)
            if has_biases:
                # Exactly 0 under batch normalisation, not under layer normalisation (see
                # vangrad.engine.backward).
                db = dz.sum(axis=-2, keepdims=True)
                dbs.append(np.zeros_like(db) if forward.norm_axis == -2 else db)
            if forward.keep_inputs:
                dzs.append(dz)
            w_t = self.transposed[layer]
            out = None
            if in_place:
                shape = (*_stack_of(dz, w_t), dz.shape[-2], w_t.shape[-1])
                # Not g's buffer (the residual term adds g), nor dz's (read by the product and
                # again for the weight gradient).
                busy = (g, dz) if dz_sum is None else (g, dz, dz_sum)
                out = buffers.take(shape, self.dtype, *busy)
            g_below = np.matmul(dz, w_t, out=out)
            if gain is not None:
                g_below *= gain
            if residual is True:
                g_below += g
            elif residual == "post":
                g_below += dz_sum
            gs.append(g_below)
            g = g_below
        return gs, dzs, dbs

    def _record(
        self,
        chunk: range,
        gs: list[np.ndarray],
        dzs: list[np.ndarray],
        dbs: list[np.ndarray],
        *,
        check: bool,
    ) -> bool:
        """Measure a propagated chunk's norms, record them and rescale the running gradient.

        Returns False, recording nothing, if `check` and the unscaled gradients left the safe
        range (the caller then runs the chunk again layer by layer).
        """
        forward, base, dtype = self.forward, self.scale, self.dtype
        layers = list(reversed(chunk))  # the order of gs, dzs and dbs
        norms = frobenius_norms(_stacked(gs))  # (len(chunk), *stack), top layer first
        bias_norms = weight_norms = dw_all = h_in = None
        if dbs:
            bias_norms = frobenius_norms(_stacked(dbs))
        if dzs:
            h_in = _stacked([forward.inputs[layer] for layer in layers])
            dz_all = _stacked(dzs)
            if not self.keep_grads:
                weight_norms = _gram_norms(h_in, dz_all)
            if weight_norms is None:
                h_t = np.swapaxes(h_in, -1, -2)
                shape = (*_stack_of(h_t, dz_all), h_t.shape[-2], dz_all.shape[-1])
                out = self.buffers.take(shape, dtype, gs[-1], *dzs)
                dw_all = np.matmul(h_t, dz_all, out=out)
                weight_norms = frobenius_norms(dw_all)
        if check and not self._in_range(norms, bias_norms, weight_norms, h_in):
            return False

        span = slice(chunk.start, chunk.stop)
        log_norms = np.log10(norms)
        base_log = log10_scale(base)  # as in log10_norms, once for the whole chunk
        self.log10_grads[..., span] = _bottom_first(log_norms + base_log)
        if bias_norms is not None:
            self.log10_bias_grads[..., span] = _bottom_first(np.log10(bias_norms) + base_log)
        if weight_norms is not None:
            self.log10_weight_grads[..., span] = _bottom_first(np.log10(weight_norms) + base_log)
        if self.keep_grads:
            self.grads.extend(unscale(g, base) for g in gs)
            self.b_grads.extend(unscale(db, base)[..., 0, :] for db in dbs)
            if dw_all is not None:
                self.w_grads.extend(unscale(dw, base) for dw in dw_all)
        for layer in layers:  # what the pass has read can go
            forward.inputs[layer] = forward.slopes[layer] = forward.normalised[layer] = None
            forward.exceptions[layer] = None
        exponent = binary_exponent(norms[-1])
        self.scale = base + exponent
        self.g = np.ldexp(gs[-1], -exponent[..., np.newaxis, np.newaxis], out=gs[-1])
        self.norms = norms[-1]
        if check:
            self._adapt(log_norms)
        return True

    def _in_range(
        self,
        norms: np.ndarray,
        bias_norms: np.ndarray | None,
        weight_norms: np.ndarray | None,
        inputs: np.ndarray | None,
    ) -> bool:
        """Whether a chunk's unscaled gradients lost nothing to the float range.

        The gradient norms must lie inside the window around 1, or be an exact 0 where the
        gradient was already 0 before the chunk (a gradient that died in an earlier chunk,
        higher up the network, cannot come back to life). The weight and bias gradients, whose
        size also depends on the forward pass, must be finite and either 0 or clear of the
        subnormals. A weight gradient of exactly 0 must also have a reason that no rescaling
        changes: a layer input of exactly 0, or a gradient already 0 above the chunk; otherwise
        its product underflowed (a tiny input times an unscaled gradient), where the
        reference's rescaled one would not. Networks whose forward pass overflowed, or whose
        gradient is already nan, are not held to any of this: their gradients mean nothing,
        and re-running them layer by layer would change nothing.
        """
        low, high = 10.0**-self.window, 10.0**self.window
        ok = (norms >= low) & (norms <= high)
        ok |= (norms == 0) & (self.norms == 0)
        tiny = float(np.finfo(self.dtype).smallest_normal) * 1e6
        if bias_norms is not None:
            ok &= (bias_norms == 0) | ((bias_norms >= tiny) & (bias_norms < np.inf))
        if weight_norms is not None:
            usable = (weight_norms >= tiny) & (weight_norms < np.inf)
            zero = weight_norms == 0
            if zero.any():  # rare: the inputs' norms only then
                zero &= (frobenius_norms(inputs) == 0) | (self.norms == 0)
            ok &= zero | usable
        return bool(np.all(ok | self.broken | np.isnan(self.norms)))

    def _adapt(self, log_norms: np.ndarray) -> None:
        """Size the next chunk to drift half the window at the rate the last one drifted."""
        # The farthest the chunk drifted from norm 1 (a zero gradient, -inf, tells nothing).
        drift = float(np.max(np.abs(log_norms), where=np.isfinite(log_norms), initial=0.0))
        self.chunk = int(min(256, max(1, len(log_norms) * self.window / (2 * drift + 1e-3))))

    def _local_gradient(self, g: np.ndarray, layer: int, in_place: bool) -> np.ndarray:
        """`dz = g * phi'(z)`; in place on an operand the pass no longer needs, if `in_place`."""
        forward = self.forward
        cached = forward.slopes[layer]
        if forward.from_value[layer]:
            activation = forward.activation
            exceptions = forward.exceptions[layer]
            if exceptions is None:
                slope = activation.slope_from_value(cached)
            else:
                slope = activation.approximate_slope_from_value(cached)
                # Read before g may be overwritten below.
                g_exact = g.reshape(-1)[exceptions[0]] * exceptions[1]
            if not in_place:
                dz = np.multiply(g, slope)
            else:
                # g is this pass's own array (a buffer, or the copy of the upstream gradient);
                # with residual connections it is still needed (g_below += g): elsewhere then.
                out = self.buffers.take(g.shape, g.dtype, g) if forward.residual else g
                dz = np.multiply(g, slope, out=out)
            if exceptions is not None:
                dz.reshape(-1)[exceptions[0]] = g_exact
            return dz
        if (
            in_place
            and cached.shape == g.shape
            and cached.dtype == g.dtype
            and cached.flags.writeable
            and cached.flags.owndata
        ):
            return np.multiply(g, cached, out=cached)
        return np.multiply(g, cached)


def _gram_is_cheaper(dtype: np.dtype, batch: int, n_in: int, n_out: int) -> bool:
    """Whether `_gram_norms` takes the Gram route for these shapes (see there)."""
    return (
        dtype == np.float64
        and n_in * n_out >= _GRAM_MIN_ELEMENTS
        and batch * (n_in + n_out) <= _GRAM_ADVANTAGE * 2 * n_in * n_out
    )


# Measured on this project's machines: two Gram matrices of a 256 x 512 batch take 2.0 ms with
# numpy (syrk) against 3.2 ms for the 512 x 512 product; for small stacked matrices numpy's
# per-matrix overhead eats the gain (100 of 32 x 64: 0.73 ms against 0.64 ms).
_GRAM_MIN_ELEMENTS = 1 << 16
_GRAM_ADVANTAGE = 0.7


def _gram_norms(h_in: np.ndarray, dz: np.ndarray) -> np.ndarray | None:
    """`||h_in^T dz||_F` over the last two axes, without the `n_in x n_out` product; or None.

    `||H^T D||_F^2 = <H H^T, D D^T>`: two `batch x batch` Gram matrices, which numpy computes
    with syrk (half a product each), instead of the `n_in x n_out` weight gradient. Taken for
    float64 when that is cheaper; None otherwise, and None where the inner product cancels
    (below 1e-4 of the Gram matrices' norms, where its rounding error would show) or where the
    squares leave the float range: the caller then forms the product.
    """
    batch, n_in, n_out = dz.shape[-2], h_in.shape[-1], dz.shape[-1]
    if not _gram_is_cheaper(dz.dtype, batch, n_in, n_out) or h_in.dtype != dz.dtype:
        return None
    gram_h = np.matmul(h_in, np.swapaxes(h_in, -1, -2))
    gram_d = np.matmul(dz, np.swapaxes(dz, -1, -2))
    flat_h = gram_h.reshape(*gram_h.shape[:-2], -1)
    flat_d = gram_d.reshape(*gram_d.shape[:-2], -1)
    squares = np.vecdot(flat_h, flat_d)
    scale = np.sqrt(np.vecdot(flat_h, flat_h) * np.vecdot(flat_d, flat_d))
    # scale == 0: H or D is 0, and so is the norm, exactly.
    reliable = ((squares >= 1e-4 * scale) & (scale < np.inf) & (squares > 1e-280)) | (scale == 0)
    if not reliable.all():
        return None
    return np.sqrt(np.maximum(squares, 0.0))


def weight_grad_flops(batch: int, n_in: int, n_out: int, dtype: type = np.float64) -> int:
    """FLOPs the engine spends on one layer's weight-gradient norm (for the benchmark's count)."""
    if _gram_is_cheaper(np.dtype(dtype), batch, n_in, n_out):
        # Two syrk Gram matrices (batch^2 n each, half a product) and their inner product.
        return batch * batch * (n_in + n_out) + 2 * batch * batch
    return 2 * batch * n_in * n_out
