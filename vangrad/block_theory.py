r"""Mean-field predictions for the residual blocks of `vangrad.blocks`, at initialisation.

Assumptions, as in `vangrad.theory`: infinite width (every pre-activation is Gaussian, the
stream's per-unit variance is the same for every sample), and gradient independence (the
backward pass meets weights independent of the forward pass's). What is exact is said where
it is used.

The branch. $F(u) = \phi(u W^{in}) W^{out}$ with entries of $W^{in}$ of variance
$\sigma_{in}^2 / d$ and of $W^{out}$ of variance $\sigma_{out}^2 / m$ (Xavier's rule gives
$\sigma_{in}^2 = 2d/(d+m)$ and $\sigma_{out}^2 = 2m/(d+m)$: 0.4 and 1.6 for $m = 4d$). For an
input of per-unit variance $q$, the branch's output has per-unit variance

$$\sigma_F^2(q) = \sigma_{out}^2\, \mathbb{E}[\phi(z)^2],
\quad z \sim \mathcal{N}(0, \sigma_{in}^2 q),$$

and its Jacobian multiplies a random gradient's mean square by
$\chi_F(q) = \sigma_{out}^2 \sigma_{in}^2\, \mathbb{E}[\phi'(z)^2]$. For ReLU both are
$\sigma_{out}^2 \sigma_{in}^2 q / 2$ and $\sigma_{out}^2 \sigma_{in}^2 / 2$: 0.32 $q$ and 0.32.

The stream and its gradient, per block (mean squares per unit, $G_l$ the mean square of
$\partial L / \partial x_l$ per unit), with the skip scale $\alpha$ and branch scale $s$:

- pre: $q_l = \alpha^2 q_{l-1} + s^2 \sigma_F^2(1)$ (the branch sees $N(x_{l-1})$, of
  variance 1); $G_{l-1} = G_l (\alpha^2 + s^2 \chi_F(1) / q_{l-1})$, the normalisation's
  backward pass dividing the branch's share by $q_{l-1}$; a final normalisation divides the
  upstream $G$ by $q_L$.
- post: the stream has variance 1 after every block (the input $x_0$ its own, $q_0$); with
  the sum's variance $v = \alpha^2 q_{l-1} + s^2 \sigma_F^2(q_{l-1})$,
  $G_{l-1} = G_l (\alpha^2 + s^2 \chi_F(q_{l-1})) / v$.
- none: $q_l = \alpha^2 q_{l-1} + s^2 \sigma_F^2(q_{l-1})$;
  $G_{l-1} = G_l (\alpha^2 + s^2 \chi_F(q_{l-1}))$.

For ReLU, pre-LN's $G$ therefore grows from the top down as $G_l = G_{up} / q_l$ exactly
(in mean field): $\lVert \partial L / \partial x_l \rVert \propto 1 / \sqrt{1 + l \sigma_F^2}$, and
the last block's weight gradient falls with depth as $1 / \sqrt{1 + L \sigma_F^2}$, the depth
dependence of Xiong et al. (2020, Theorem 1). Post-LN's factor is exactly 1 per block.

Left out: finite width. At width $d$ each block adds corrections of order $1/d$ (a LayerNorm's
backward pass removes the gradient's components along the ones and along its output, two
directions of $d$; centring lowers a sample's measured variance by $1 - 1/d$; and
$\mathbb{E}[1/v] > 1/\mathbb{E}[v]$ for the variance $v$ a normalisation divides by). In
post-LN stacks of ReLU blocks they cancel to well below the spread between networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vangrad._validation import check_choice, check_positive_float, check_positive_int
from vangrad.activations import Activation
from vangrad.blocks import BLOCKS, block_settings
from vangrad.initializers import Initializer, get_initializer
from vangrad.network_checks import check_activation
from vangrad.theory import chi, variance_map

__all__ = ["BlockPrediction", "branch_gains", "predict_blocks"]


@dataclass(frozen=True)
class BlockPrediction:
    r"""What mean field predicts for a stack of blocks (shapes as in `BlockFlow`, one network).

    Attributes:
        stream_rms: The root mean square of $x_l$ per unit, $l = 0, \dots, L$.
        log10_grad_norms: $\log_{10}$ of the per-sample norm of $\partial L / \partial x_l$.
        log10_w_out_grad_norms: $\log_{10}$ of the per-sample norm of the gradient of
            $W^{out}_l$.
        branch_variance: $\sigma_F^2(1)$, the branch's output variance for a unit-variance input.
        branch_chi: $\chi_F(1)$.
    """

    stream_rms: np.ndarray
    log10_grad_norms: np.ndarray
    log10_w_out_grad_norms: np.ndarray
    branch_variance: float
    branch_chi: float


def branch_gains(
    width: int,
    *,
    hidden: int | None = None,
    init: str | Initializer = "xavier_normal",
    weight_gain: float = 1.0,
) -> tuple[float, float]:
    r"""$(\sigma_{in}^2, \sigma_{out}^2)$: fan-in times weight variance, for both branch layers.

    Example:
        ```py
        from vangrad.block_theory import branch_gains

        print([round(g, 6) for g in branch_gains(256)])  # Xavier, hidden width 4d
        #> [0.4, 1.6]
        ```
    """
    width = check_positive_int("width", width)
    hidden = 4 * width if hidden is None else check_positive_int("hidden", hidden)
    initializer = get_initializer(init)
    sigma_in2 = width * initializer.variance(width, hidden, weight_gain)
    sigma_out2 = hidden * initializer.variance(hidden, width, weight_gain)
    return sigma_in2, sigma_out2


def predict_blocks(
    block: str,
    depth: int,
    width: int,
    *,
    activation: str | Activation = "relu",
    hidden: int | None = None,
    init: str | Initializer = "xavier_normal",
    branch_scale: float | None = None,
    input_variance: float = 1.0,
) -> BlockPrediction:
    r"""Mean field's prediction for `vangrad.blocks.simulate_blocks` with the same arguments.

    The upstream gradient's per-sample norm is taken as $\sqrt{d}$, the random loss's;
    `input_variance` is the per-unit variance of $x_0$ (1 for `simulate_blocks`' standard
    normal input; a finite batch's own mean square, to compare with networks run on that
    batch).

    Example:
        ```py
        from vangrad.block_theory import predict_blocks

        p = predict_blocks("pre", 48, 256)
        print(round(p.branch_variance, 4), round(float(p.stream_rms[-1]), 3))
        #> 0.32 4.045
        ```
    """
    block = check_choice("block", block, BLOCKS)
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    act = check_activation(activation)
    hidden = 4 * width if hidden is None else check_positive_int("hidden", hidden)
    settings = block_settings(block, depth, branch_scale=branch_scale)
    sigma_in2, sigma_out2 = branch_gains(
        width, hidden=hidden, init=init, weight_gain=settings["weight_gain"]
    )
    alpha2, s2 = settings["skip_scale"] ** 2, settings["branch_scale"] ** 2
    placement = settings["placement"]

    def variance(q: float) -> float:  # sigma_F^2(q)
        return float(variance_map(sigma_in2 * q, sigma_out2, 0.0, act))

    def gain(q: float) -> float:  # chi_F(q)
        return float(chi(sigma_in2 * q, sigma_out2, 0.0, act)) * sigma_in2

    def hidden_square(q: float) -> float:  # |phi(u W_in)|^2 per sample
        return hidden * variance(q) / sigma_out2

    q = [check_positive_float("input_variance", input_variance)]  # per unit, of x_l
    for _ in range(depth):
        if placement == "pre":
            q.append(alpha2 * q[-1] + s2 * variance(1.0))
        elif placement == "post":
            q.append(1.0)
        else:
            q.append(alpha2 * q[-1] + s2 * variance(q[-1]))
    # G: mean square per unit of dLoss/dx_l, from the top.
    top = 1.0 / q[-1] if settings["final_norm"] else 1.0
    grad = [top]
    w_out = []
    for block_index in reversed(range(depth)):
        q_in, g_out = q[block_index], grad[-1]
        if placement == "pre":
            branch_in, at_sum = 1.0, g_out
            g_in = g_out * (alpha2 + s2 * gain(1.0) / q_in)
        elif placement == "post":  # x_0 is not normalised: q_in is 1 only above it
            v = alpha2 * q_in + s2 * variance(q_in)
            branch_in, at_sum = q_in, g_out / v
            g_in = at_sum * (alpha2 + s2 * gain(q_in))
        else:
            branch_in, at_sum = q_in, g_out
            g_in = g_out * (alpha2 + s2 * gain(q_in))
        # |dW_out| per sample = |phi(u W_in)| |s dLoss/dsum|, the norms of an outer product.
        with np.errstate(divide="ignore"):  # ReZero's branch scale 0: -inf
            w_out.append(0.5 * np.log10(hidden_square(branch_in) * s2 * at_sum * width))
        grad.append(g_in)
    grad.reverse()
    w_out.reverse()
    # Per sample, |g| = sqrt(d G); the upstream's own norm is sqrt(d).
    return BlockPrediction(
        stream_rms=np.sqrt(q),
        log10_grad_norms=0.5 * np.log10(np.asarray(grad) * width),
        log10_w_out_grad_norms=np.asarray(w_out),
        branch_variance=variance(1.0),
        branch_chi=gain(1.0),
    )
