# %% [markdown]
# # Quickstart notebook
#
# Five minutes with `vangrad`: the textbook bound, a measured deep sigmoid network beside a
# ReLU network, the theory's prediction beside the measurement, one fix, and where to go
# next. This notebook runs while the site builds, so every output below is fresh. Download it
# with the button at the top of the page and run it locally: it needs only `vangrad`.
#
# ## 1. The bound, and when it holds
#
# The sigmoid's slope is at most $\sigma'(0) = 0.25$. In a **chain of single units**,
# $h_l = \sigma(w_l h_{l-1})$, each unit multiplies the gradient by $w_l\, \sigma'(z_l)$, so
# if every weight has $|w_l| \le 1$ a chain of $k$ units passes at most $0.25^k$ of it:
#
# $$
# \left|\frac{\partial L}{\partial h_0}\right|
# \le \prod_{l=1}^{k} |w_l|\, \sigma'(z_l) \left|\frac{\partial L}{\partial h_k}\right|
# \le 0.25^k \left|\frac{\partial L}{\partial h_k}\right|
# \quad \text{when every } |w_l| \le 1.
# $$
#
# Without that condition there is no such bound: with $|w_l| > 4$ a unit whose $z_l$ is near
# 0 multiplies the gradient by more than 1.

# %%
import matplotlib.pyplot as plt
import numpy as np

from vangrad import backprop, get_initializer, gradient_bound, log10_gradient_bound
from vangrad.plotting import plot_gradient_bound, plot_gradient_profile
from vangrad.theory import init_sigma_w2, predicted_log10_grad_norms

plt.rcParams["figure.dpi"] = 80

print(gradient_bound(5).tolist())
print(f"1000 units: at most 10^{log10_gradient_bound(1000)[0]:.2f}")

# %%
# alt: On a log axis the bound falls in a straight line: 0.25 at k = 1, 10^-24 at k = 40.
ax = plot_gradient_bound(40)
ax.set_title("The most gradient that can survive k sigmoid units, when every |w| is at most 1")
plt.show()

# %% [markdown]
# ## 2. A real deep network: sigmoid against ReLU
#
# Real layers have many units and random weights, so the bound is not the measurement. Here
# are networks of 30 layers of 128 units, with Glorot's variance for the sigmoid and He's for
# ReLU, measured by the engine (four networks each, median and interquartile band).
#
# The measurement needs a loss. We use a random Gaussian upstream gradient $\partial L /
# \partial h_{30}$, drawn independently of the network, because it is what the theory in the
# next section assumes (the engine's default, the sum of the outputs, is an upstream gradient
# of ones, which can correlate with the network and shift the numbers).

# %%
DEPTH, WIDTH, BATCH, TRIALS = 30, 128, 32, 4


def measure(activation: str, init: str, *, residual: bool = False, seed: int = 0):
    """Forward and backward through TRIALS random networks, with a random upstream gradient."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, WIDTH))
    weights = list(
        get_initializer(init)
        .sample(rng, WIDTH, WIDTH, trials=DEPTH * TRIALS)
        .reshape(DEPTH, TRIALS, WIDTH, WIDTH)
    )
    upstream = rng.standard_normal((TRIALS, BATCH, WIDTH))
    return backprop(x, weights, activation, residual=residual, upstream=upstream)


def change(flow) -> float:
    """Median log10 of the input's gradient norm over the output's."""
    return float(np.median(flow.log10_grad_norms[:, 0] - flow.log10_grad_norms[:, -1]))


flows = {
    "sigmoid, Glorot": measure("sigmoid", "xavier_normal"),
    "ReLU, He": measure("relu", "he_normal"),
}
for label, flow in flows.items():
    print(f"{label:16s} gradient at the input vs the output: 10^{change(flow):.1f}")

# %% [markdown]
# ## 3. The prediction beside the measurement
#
# Mean-field theory (exact only as the width grows without bound) predicts the decay: per
# layer the mean squared gradient is multiplied by $\chi = \sigma_w^2\,
# \mathbb{E}[\phi'(z)^2]$, where $\sigma_w^2$ is the weight variance times the fan-in. For
# the sigmoid with Glorot's variance that is far below one; for ReLU with He's it is exactly
# one. The dashed lines are the predictions, the solid ones the measurements:

# %%
# alt: Gradient norm by layer, relative to the output, on a log axis: the measured sigmoid network
#   falls in a straight line towards the input and its dashed prediction lies on top of it; the
#   measured ReLU network stays level, on its level prediction.
ax = None
layers = np.arange(DEPTH + 1)
for (label, flow), (activation, init) in zip(
    flows.items(), (("sigmoid", "xavier_normal"), ("relu", "he_normal")), strict=True
):
    ax = plot_gradient_profile(flow, label=f"measured: {label}", ax=ax)
    predicted = predicted_log10_grad_norms(DEPTH, init_sigma_w2(init, WIDTH), 0.0, activation)
    ax.plot(layers, predicted, "--", color="0.3")  # the axis holds log10 values
    print(f"{label:16s} predicted 10^{predicted[0]:.1f}, measured 10^{change(flow):.1f}")
ax.plot([], [], "--", color="0.3", label="mean-field prediction")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# ## 4. A fix that keeps the sigmoid
#
# ReLU with He's variance is one fix. Another keeps the sigmoid and adds a skip around every
# layer, $h_l = h_{l-1} + \sigma(z_l)$: the gradient then has a path through the identity
# that no slope multiplies.

# %%
residual = measure("sigmoid", "xavier_normal", residual=True)
print(f"sigmoid, Glorot, residual: 10^{change(residual):.1f}")

# %% [markdown]
# ## 5. Where to go next
#
# - [The bound and a stack of sigmoids](../../) explains why the slope sets a limit and why
#   the weights enter.
# - [Deep sigmoid networks](../../deep-sigmoid/) and [ReLU](../../relu/) measure the problem;
#   [initialisation](../../initialisation/), [batch normalisation](../../batchnorm/) and
#   [residual connections](../../residual/) measure the cures.
# - [Predicting the decay](../../theory/predicting-decay/) derives the prediction of
#   section 3, and [the edge of chaos](../../theory/edge-of-chaos/) says where it is one.
# - The [training notebook](../training/) trains deep networks and watches which layers learn.
