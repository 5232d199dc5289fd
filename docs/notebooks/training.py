# %% [markdown]
# # Training: watch the early layers stall
#
# The other pages measure gradients at initialisation. This notebook trains three deep
# networks and watches what a vanishing gradient does to **learning**: how far each layer's
# weights move at every step.
#
# All three networks have the same shape, 12 layers of 32 units and a linear readout to two
# classes, and get the same data, the same number of steps and the same optimiser (mini-batch
# SGD with momentum). They differ only in what the other pages say matters:
#
# - **(a)** sigmoid units, with weights drawn from $\mathcal{N}(0, 0.1^2)$ in every layer,
#   whatever its width: the "small random numbers" of many early tutorials;
# - **(b)** ReLU units with He initialisation, variance $2 / n_\text{in}$;
# - **(c)** tanh units with Glorot initialisation and residual connections,
#   $h_l = h_{l-1} + \tanh(z_l)$.
#
# Everything below runs while the site builds, so every number and figure is fresh.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from vangrad.datasets import spirals
from vangrad.plotting import plot_decision_boundary, plot_loss_curves, plot_update_ratios
from vangrad.training import loss_and_gradients, make_network, train

# Smaller images than the default 100 dpi keep this page light enough to read offline quickly.
plt.rcParams["figure.dpi"] = 80

# %% [markdown]
# ## The data: two interleaved spirals
#
# No straight line separates the two arms, and the boundary between them winds around the
# origin; a network has to fold the plane several times to draw it. 200 points per arm, with
# a little noise, all generated from a seed:

# %%
x, y = spirals(200, turns=1.25, noise=0.05, seed=0)
print(x.shape, np.bincount(y).tolist())

# %% [markdown]
# ## Three networks, trained the same way

# %%
DEPTH, WIDTH = 12, 32
RUNS = {
    "(a) sigmoid, N(0, 0.1²)": {"activation": "sigmoid", "init": "normal", "weight_scale": 0.1},
    "(b) ReLU, He": {"activation": "relu", "init": "he_normal"},
    "(c) tanh, Glorot, residual": {
        "activation": "tanh",
        "init": "xavier_normal",
        "residual": True,
    },
}
TRAINING = {"steps": 400, "batch_size": 64, "learning_rate": 0.02, "momentum": 0.9, "seed": 2}

results = {}
start = time.perf_counter()
for label, architecture in RUNS.items():
    network = make_network(2, 2, depth=DEPTH, width=WIDTH, seed=1, **architecture)
    results[label] = train(network, x, y, **TRAINING)
print(
    f"trained {len(RUNS)} networks for {TRAINING['steps']} steps each in "
    f"{time.perf_counter() - start:.1f} s"
)

# %% [markdown]
# ## The loss
#
# A network that has learnt nothing predicts 50/50 and pays $\ln 2 \approx 0.693$ per point.
# Each step's loss is measured on its own random mini-batch, so the faint lines are noisy; the
# bold ones are moving averages over 20 steps.

# %%
# alt: Mini-batch loss against the training step: the sigmoid network (a) stays flat at the dotted
#   line of a coin flip, ln 2, while the ReLU (b) and residual tanh (c) networks fall towards zero.
ax = plot_loss_curves(results)
ax.axhline(np.log(2), color="0.4", linestyle=":", linewidth=1)
ax.set_title("Training loss: same data, same steps, same optimiser")
plt.show()

# %% [markdown]
# The loss and accuracy on the whole data set after training, next to the size of the first
# layer's updates: the median over all steps of the update ratio
# $\|\Delta W_1\| / \|W_1\|$: the size of one step's change to the layer's weights, relative to
# the weights themselves.

# %%
for label, result in results.items():
    final = loss_and_gradients(result.network, x, y)
    first = np.median(result.update_ratios[:, 0])
    last = np.median(result.update_ratios[:, DEPTH - 1])
    print(
        f"{label:27s} loss {final.loss:.3f}  accuracy {final.accuracy:.0%}  "
        f"update ratio: layer 1 {first:.1e}, layer {DEPTH} {last:.1e}"
    )

# %% [markdown]
# ## How far each layer moves
#
# Each row of these maps is a layer, the first at the top and the readout at the bottom; each
# column is four training steps. The colour is $\log_{10}$ of the update ratio (averaged over
# the four steps), on one scale for all three maps.

# %%
# alt: Three heat maps of the log10 update ratio by layer and step, on one colour scale: in (a) the
#   colour darkens layer by layer from the readout at the bottom to the first layers at the top,
#   many powers of ten lower there, for the whole of training; in (b) and (c) every layer has
#   about the same colour.
logs = np.log10(np.concatenate([r.update_ratios.ravel() for r in results.values()]))
low, high = np.floor(logs.min()), np.ceil(logs.max())
fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), layout="constrained", sharex=True)
for ax, (label, result) in zip(axes, results.items(), strict=True):
    plot_update_ratios(result, steps_per_column=4, vmin=low, vmax=high, ax=ax)
    ax.set_title(label)
plt.show()

# %% [markdown]
# In (a) the gradient reaching a layer shrinks by roughly the same factor at every layer it
# passes on its way down, so the update ratio falls nearly in a straight line in $\log_{10}$ from
# the readout down to the first layers (layer 1, fed the data rather than sigmoid outputs, sits
# slightly above layers 2 and 3). Those first layers keep their random initial weights: the
# readout is left to separate the spirals with features that are a random, nearly constant
# function of the input, and the loss stays where it started. (b) and (c) keep every layer's
# ratio in the same band, so every layer learns.
#
# Why (a) vanishes, per layer: a weight of standard deviation 0.1 in a layer of 32 units gives
# a mean-field factor $\chi = 32 \cdot 0.1^2 \cdot \mathbb{E}[\sigma'(z)^2]$, and with
# $\sigma'$ at most $1/4$ it is small, so the squared gradient shrinks by a large factor per
# layer. The gradient norms of the first step say the same:

# %%
print(f"chi <= {WIDTH} * 0.1^2 * (1/4)^2 = {WIDTH * 0.1**2 * 0.25**2:.3f} per layer for (a)")
for label, result in results.items():
    norms = result.grad_norms[0]
    print(
        f"{label:27s} ||dLoss/dW|| at step 1: layer 1 {norms[0]:.1e}, "
        f"layer {DEPTH} {norms[DEPTH - 1]:.1e}, readout {norms[-1]:.1e}"
    )

# %% [markdown]
# ## What each network learnt
#
# The plane coloured by the class each network predicts, with the training points on top.

# %%
# alt: Decision regions on the spirals: network (a) colours the whole plane, or nearly all of it,
#   with one class; networks (b) and (c) draw a boundary that winds between the two arms.
fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), layout="constrained")
for ax, (label, result) in zip(axes, results.items(), strict=True):
    plot_decision_boundary(result.network, x, y, resolution=120, ax=ax)
    ax.set_title(label, fontsize="medium")
plt.show()

# %% [markdown]
# ## Try it
#
# Download the notebook (buttons at the top) and change one thing at a time: train (a) for
# ten times as many steps, give it `init="xavier_normal"` (and delete its `weight_scale`, which
# for every initialiser but `"normal"` is a gain), make it shallower (`DEPTH = 3`),
# or give it residual connections. Each of these changes how far its first layers move.
