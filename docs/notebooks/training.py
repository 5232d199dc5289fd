# %% [markdown]
# # Training: watch the early layers stall
#
# The other pages measure gradients at initialisation. This notebook trains three deep
# networks and watches what a vanishing gradient does to **learning**: how far each layer's
# weights move at every step, and what the layers pass forward.
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
# Later sections ask why (a) fails (two reasons, one cause), whether a network of this size
# can carry its signal forward and still starve its first layers, where the loss spikes of
# (b) and (c) come from, and what Adam's adaptive step sizes change. Everything below runs
# while the site builds, so every number and figure is fresh.

# %%
import matplotlib.pyplot as plt
import numpy as np

from vangrad import chi_1
from vangrad.datasets import spirals
from vangrad.plotting import plot_decision_boundary, plot_loss_curves, plot_update_ratios
from vangrad.training import layer_outputs, loss_and_gradients, make_network, train

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

networks = {
    label: make_network(2, 2, depth=DEPTH, width=WIDTH, seed=1, **architecture)
    for label, architecture in RUNS.items()
}
results = {label: train(network, x, y, **TRAINING) for label, network in networks.items()}

# %% [markdown]
# ## The loss
#
# A network that has learnt nothing predicts 50/50 and pays $\ln 2 \approx 0.693$ per point.
# Each step's loss is measured on its own random mini-batch, so the faint lines are noisy; the
# bold ones are moving averages over 20 steps.

# %%
# alt: Mini-batch loss against the training step: the sigmoid network (a) stays flat at the dotted
#   line of a coin flip, ln 2, while the ReLU (b) and residual tanh (c) networks fall towards zero,
#   each with a burst, some way into training, where the loss jumps back up for a few dozen steps.
ax = plot_loss_curves(results)
ax.axhline(np.log(2), color="0.4", linestyle=":", linewidth=1)
ax.set_title("Training loss: same data, same steps, same optimiser")
plt.show()

# %% [markdown]
# The loss and accuracy on the whole data set after training, next to the size of the first
# and last layers' updates: the median over all steps of the update ratio
# $\|\Delta W_l\| / \|W_l\|$, the size of one step's change to the layer's weights relative
# to the weights themselves.

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
# (b) and (c) keep every layer's ratio in one band, so every layer learns. In (a) the ratio
# falls by nearly the same factor per layer from the readout down to layer 2 (layer 1, fed
# the data rather than sigmoid outputs, sits a little above layer 2).
#
# ## Why (a) learns nothing: two reasons, one factor
#
# It is tempting to stop there: the first layers do not move, so nothing is learnt. That is
# half the story. Network (a) is in the *ordered* phase of the [mean-field
# theory](../../theory/predicting-decay/): with weights of variance $\sigma_w^2 / n$ and
# $\sigma_w^2 = 32 \cdot 0.1^2$, the factor $\chi_1 = \sigma_w^2\, \mathbb{E}[\sigma'(z)^2]$
# is far below one. Two things then shrink by $\sqrt{\chi_1}$ per layer, not one:
#
# - **backward**, the gradient that reaches each layer, so the first layers hardly move;
# - **forward**, the differences between the features of different inputs: every layer maps
#   the inputs closer together, so the last layers' features are nearly the same for every
#   point of the plane.
#
# Both are the layer-to-layer Jacobian at work: a small change of $h_{l-1}$ reaches $h_l$
# multiplied by it, and the gradient goes back multiplied by its transpose. Schoenholz et al.
# (2017) show that in the mean-field limit, in the ordered phase, the same $\chi_1$ sets both
# depth scales, the forward one and the backward one. Measured
# on the 400 points at initialisation, with the spread of a layer's features over the data
# (the root mean square over units of each unit's standard deviation over the points)
# relative to their size:


# %%
def relative_spread(h: np.ndarray) -> float:
    """How much a layer's features vary over the data, relative to their root mean square."""
    return float(np.sqrt(h.var(axis=0).mean() / np.mean(h**2)))


label_a = next(iter(RUNS))
net_a, result_a = networks[label_a], results[label_a]
sigma_w2 = WIDTH * 0.1**2
factor = np.sqrt(chi_1(sigma_w2, 0.0, "sigmoid"))
print(f"mean field: sqrt(chi_1) at sigma_w^2 = {sigma_w2:.2f}: {factor:.3f} per layer")
spreads = [relative_spread(h) for h in layer_outputs(net_a, x)]
forward = (spreads[DEPTH] / spreads[1]) ** (1 / (DEPTH - 1))
g0 = loss_and_gradients(net_a, x, y).weights
backward = (np.linalg.norm(g0[0]) / np.linalg.norm(g0[DEPTH - 1])) ** (1 / (DEPTH - 1))
print(f"measured per layer: forward spread x{forward:.3f}, weight gradient x{backward:.3f}")
print(
    f"spread of the features over the data: layer 1 {spreads[1]:.1e}, "
    f"layer {DEPTH - 1} {spreads[DEPTH - 1]:.0e}, layer {DEPTH} {spreads[DEPTH]:.0e}"
)
spread_after = relative_spread(layer_outputs(result_a.network, x)[DEPTH])
print(f"layer {DEPTH}'s spread after training: {spread_after:.0e}")

# %% [markdown]
# So (a) fails for both reasons at once. Its first layers barely move; but even if they did,
# what they changed would reach the readout shrunk by the same factor per layer on the way
# up. Its last hidden layer, in contrast, gets updates of the same size as those of (b) and
# (c) (the update ratios of layer 12 in the table above), and they do not help either: that
# layer's input, the output of the layer below, is the same for every point to many decimal
# places, so all it can learn is a constant. The readout is left with features that do not
# depend on the input, and predicts a coin flip everywhere.
#
# Adam with a tiny $\epsilon$, below, separates the two reasons: it makes the first layers
# move as much as the last, and (a) still learns nothing.
#
# ## A signal that survives, with early layers that stall?
#
# The textbook picture of a vanishing gradient is a network whose forward pass works (the
# last layers see features that still depend on the input) while its first layers cannot
# learn. Does such a network exist at this size? We searched: the shape above (12 layers of
# 32 units, the same 400 points), at initialisation, four draws of the weights each, over
# sigmoid networks from the scale of (a) up to weights of standard deviation 2, with residual
# connections and with batch normalisation, and over tanh, ReLU and GELU networks. For each,
# two numbers: how much the spread of the features changes from layer 1 to layer 12
# (forward), and how the update a step would make to layer 1 compares with layer 12's,
# $\|\nabla W_1\| / \|W_1\|$ over $\|\nabla W_{12}\| / \|W_{12}\|$ (backward), both as
# powers of ten (medians over the draws).

# %%
SEARCH = {
    **{
        f"sigmoid, N(0, {s}²)": {"activation": "sigmoid", "init": "normal", "weight_scale": s}
        for s in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
    },
    "sigmoid, Glorot": {"activation": "sigmoid", "init": "xavier_normal"},
    "sigmoid, N(0, 0.1²), residual": {
        "activation": "sigmoid",
        "init": "normal",
        "weight_scale": 0.1,
        "residual": True,
    },
    "sigmoid, N(0, 0.1²), batch norm": {
        "activation": "sigmoid",
        "init": "normal",
        "weight_scale": 0.1,
        "batchnorm": True,
    },
    "tanh, N(0, 0.1²)": {"activation": "tanh", "init": "normal", "weight_scale": 0.1},
    "tanh, Glorot": {"activation": "tanh", "init": "xavier_normal"},
    "tanh, N(0, 1)": {"activation": "tanh", "init": "normal", "weight_scale": 1.0},
    "ReLU, LeCun": {"activation": "relu", "init": "lecun_normal"},
    "ReLU, He": {"activation": "relu", "init": "he_normal"},
    "GELU, He": {"activation": "gelu", "init": "he_normal"},
}


def forward_and_backward(architecture: dict, seed: int) -> tuple[float, float]:
    """log10 of the change in spread (layer 1 to 12) and of layer 1's gradient ratio to 12's."""
    net = make_network(2, 2, depth=DEPTH, width=WIDTH, seed=seed, **architecture)
    h = layer_outputs(net, x)
    grads = loss_and_gradients(net, x, y).weights
    ratio = [np.linalg.norm(g) / np.linalg.norm(w) for g, w in zip(grads, net.weights, strict=True)]
    return (
        np.log10(relative_spread(h[DEPTH]) / relative_spread(h[1])),
        np.log10(ratio[0] / ratio[DEPTH - 1]),
    )


search = {}
for label, architecture in SEARCH.items():
    measured = np.array([forward_and_backward(architecture, seed) for seed in range(4)])
    search[label] = np.median(measured, axis=0)
    shown = np.round(search[label], 1) + 0.0  # + 0.0: no "-0.0"
    print(f"{label:33s} forward 10^{shown[0]:5.1f}   backward 10^{shown[1]:5.1f}")

# %%
# alt: Scatter of the search: the backward ratio of layer 1 to layer 12 against the change in the
#   forward spread, both as powers of ten, with the diagonal. The plain sigmoid networks lie along
#   the diagonal, from (a) far down at the lower left to the largest weights near the origin; the
#   residual sigmoid network lies near the diagonal a little below the origin, and every other
#   network sits near zero on the forward axis with a backward ratio near or above zero. The lower
#   right corner, a surviving forward signal with stalled early layers, is empty.
fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
values = np.array(list(search.values()))
plain_sigmoid = np.array(
    [
        label.startswith("sigmoid")
        and "," in label
        and "residual" not in label
        and "batch" not in label
        for label in search
    ]
)
ax.plot([-11, 1], [-11, 1], color="0.6", linestyle="--", linewidth=1, label="forward = backward")
ax.scatter(*values[plain_sigmoid].T, label="plain sigmoid networks", color="C3")
ax.scatter(*values[~plain_sigmoid].T, label="the others", color="C0")
ax.set_xlabel("forward: log10 of the spread at layer 12 over layer 1")
ax.set_ylabel("backward: log10 of layer 1's update over layer 12's")
ax.set_title("Where the forward signal survives, so do the first layers' updates")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# The corner we were looking for stays empty. Every network here whose first layer would move
# more than ten times less than its twelfth is a plain sigmoid network whose forward spread
# collapses by a similar power of ten; wherever the forward signal survives (residual
# connections, batch normalisation, tanh, ReLU, GELU), layer 1's update is about as large as
# layer 12's or larger.
# That is what the shared Jacobian predicts: at this depth and width, with these inputs, a
# vanishing gradient came with a vanishing forward signal every time. (ReLU with LeCun's
# variance shrinks its features' *size* layer by layer, but not their spread relative to that
# size, which is what the readout can use.) We did not find the textbook network; what a
# deeper or wider search would find is an open question this page does not settle.

# %% [markdown]
# ## The spikes of (b) and (c)
#
# Both working networks have a burst in their loss curve some way into training: the loss,
# already small, jumps back up for a few dozen steps and then falls again. Steps 60 to 200 of
# both, with the mini-batch loss, the norm of the whole gradient (every layer's weights) and
# the update ratios of three layers:

# %%
# alt: Steps 60 to 200 of networks (b) and (c), in three rows: the mini-batch loss, the gradient
#   norm on a log axis, and the update ratios of layer 1, layer 12 and the readout on a log axis.
#   Each burst of the loss begins with gradients far above their usual level, and the update
#   ratios of all three layers rise with them and stay high for several steps.
steps = np.arange(60, 200)
fig, axes = plt.subplots(3, 2, figsize=(11, 7), layout="constrained", sharex=True, sharey="row")
for column, label in enumerate(list(RUNS)[1:]):
    result = results[label]
    axes[0, column].plot(steps, result.loss[steps], color="0.3")
    axes[0, column].set_title(label, fontsize="medium")
    axes[1, column].semilogy(steps, np.linalg.norm(result.grad_norms[steps], axis=1), color="C3")
    for layer, name in ((0, "layer 1"), (DEPTH - 1, f"layer {DEPTH}"), (DEPTH, "readout")):
        axes[2, column].semilogy(steps, result.update_ratios[steps, layer], label=name)
    axes[2, column].set_xlabel("step")
axes[0, 0].set_ylabel("mini-batch loss")
axes[1, 0].set_ylabel("gradient norm")
axes[2, 0].set_ylabel("update ratio")
axes[2, 0].legend(fontsize="small")
plt.show()

# %% [markdown]
# In numbers: the largest gradient of steps 60 to 200 and the largest update ratio of layers
# 1 and 12 and of the readout, each against its median over those steps; the loss on all 400
# points 20 steps before the largest mini-batch loss and at it (a run with the same seed and
# fewer steps stops at exactly that step's weights); and the same training at half the
# learning rate:


# %%
def burst(label: str) -> None:
    """Print how far the gradient and the updates rise in steps 60 to 200, and at half the rate."""
    result, network = results[label], networks[label]
    total = np.linalg.norm(result.grad_norms[60:200], axis=1)
    ratios = result.update_ratios[60:200][:, [0, DEPTH - 1, DEPTH]]
    rise = ratios.max(axis=0) / np.median(ratios, axis=0)
    peak = 60 + int(np.argmax(result.loss[60:200]))
    losses = [
        loss_and_gradients(train(network, x, y, **{**TRAINING, "steps": k}).network, x, y).loss
        for k in (peak - 20, peak)
    ]
    print(
        f"{label}\n  largest gradient {total.max() / np.median(total):.0f} times the median\n"
        f"  largest update ratio: x{rise[0]:.0f} at layer 1, x{rise[1]:.0f} at layer {DEPTH}, "
        f"x{rise[2]:.0f} at the readout\n"
        f"  loss on all the data: {losses[0]:.3f} 20 steps before the largest batch loss, "
        f"{losses[1]:.3f} at it"
    )
    rate = TRAINING["learning_rate"] / 2
    slower = train(network, x, y, **{**TRAINING, "learning_rate": rate})
    total = np.linalg.norm(slower.grad_norms[60:200], axis=1)
    final = loss_and_gradients(slower.network, x, y)
    print(
        f"  half the learning rate: largest gradient {total.max() / np.median(total):.0f} "
        f"times the median,\n    largest batch loss after step 60 {slower.loss[60:].max():.2f}, "
        f"final loss {final.loss:.3f}"
    )


for label in list(RUNS)[1:]:
    burst(label)

# %% [markdown]
# A burst starts with mini-batches whose gradient is many times the usual size. By then most
# points are classified with confidence and their share of the cross-entropy's gradient is
# nearly zero, so a batch holding a few points near the boundary, or on its wrong side, gets
# a large gradient from those alone. At this learning rate the step such a gradient causes
# is too large, and momentum makes it larger: with a coefficient of 0.9 a gradient goes on
# acting for about ten steps and adds up to ten times its size. The update ratios of the
# layers measured, the first included, jump by the factors printed above, and the loss rises
# on all the data, not only on the batch: the network is thrown off the solution it had found
# and takes dozens of steps or more to recover. At half the learning rate the same networks,
# with the same batches, meet gradients many times their median too, yet train without a
# burst and end with a final loss as small (printed above). So the bursts are not a
# vanishing or an exploding gradient: they are the ordinary instability of a fixed step that
# is too large late in training. The remedy measured here is a smaller step; a schedule that
# lowers the learning rate as training goes on does that without slowing the start.
#
# ## Adam: adaptive step sizes
#
# Adam (Kingma and Ba, 2015) divides each entry's gradient by the root of a running mean of
# its square, $p \leftarrow p - \eta\, \hat m / (\sqrt{\hat s} + \epsilon)$ (see
# [`train`](../../reference/training/#vangrad.training.train)), so an entry moves by about the
# learning rate $\eta$ per step whatever its gradient's size. That is exactly what a
# vanishing gradient seems to call for. The same three networks, the same batches, with
# Adam at its usual settings ($\eta = 0.001$, $\epsilon = 10^{-8}$), and network (a) once
# more with a tiny $\epsilon = 10^{-20}$:

# %%
ADAM = {**TRAINING, "optimizer": "adam", "learning_rate": 0.001}
del ADAM["momentum"]
adam = {label: train(network, x, y, **ADAM) for label, network in networks.items()}
adam_label = f"{label_a}, epsilon 1e-20"
adam[adam_label] = train(net_a, x, y, **ADAM, epsilon=1e-20)
for label, result in adam.items():
    final = loss_and_gradients(result.network, x, y)
    first = np.median(result.update_ratios[:, 0])
    last = np.median(result.update_ratios[:, DEPTH - 1])
    medians = np.median(result.update_ratios, axis=0)
    print(
        f"Adam, {label}\n  loss {final.loss:.3f}  accuracy {final.accuracy:.0%}  "
        f"update ratio: layer 1 {first:.1e}, layer {DEPTH} {last:.1e}\n"
        f"  largest over smallest layer's median ratio {medians.max() / medians.min():.0f}, "
        f"largest batch loss after step 60 {result.loss[60:].max():.2f}"
    )
grad_a = np.median(adam[label_a].grad_norms[:, 0]) / np.sqrt(net_a.weights[0].size)
print(f"(a) with Adam: median root mean square of layer 1's gradient entries {grad_a:.0e}")
spread_adam = relative_spread(layer_outputs(adam[adam_label].network, x)[DEPTH])
print(f"(a), epsilon 1e-20: layer {DEPTH}'s spread after training {spread_adam:.0e}")

# %% [markdown]
# Per layer, the median update ratio over the 400 steps, with SGD and momentum (dashed) and
# with Adam (solid):

# %%
# alt: Median update ratio by layer on a log axis, one panel per network. In (a) the SGD curve
#   falls by many powers of ten from the readout to layer 1; the usual Adam curve is level over the
#   last layers and falls by a few powers of ten over the first ones; Adam with the tiny epsilon is
#   level across the layers. In (b) and (c) both optimisers keep every layer within a narrow band.
fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained", sharey=True)
layers = np.arange(1, DEPTH + 2)
for ax, label in zip(axes, RUNS, strict=True):
    ax.plot(layers, np.median(results[label].update_ratios, axis=0), "--", label="SGD, momentum")
    ax.plot(layers, np.median(adam[label].update_ratios, axis=0), label="Adam")
    if label == label_a:
        ax.plot(
            layers, np.median(adam[adam_label].update_ratios, axis=0), label="Adam, epsilon 1e-20"
        )
    ax.set_yscale("log")
    ax.set_xlabel(f"layer (readout = {DEPTH + 1})")
    ax.set_title(label, fontsize="medium")
    ax.legend(fontsize="small")
axes[0].set_ylabel("median update ratio")
plt.show()

# %% [markdown]
# What the adaptive step sizes fix: in (b) and (c) every layer moves by a similar fraction of
# its weights (the largest and smallest median ratios are printed above), with no burst at
# this learning rate, and both learn the spirals.
#
# What they do not fix, in (a):
#
# - **Gradients below $\epsilon$.** Layer 1's gradient entries are far smaller than Adam's
#   usual $\epsilon$ (printed above), so for them the division gives about $g / \epsilon$,
#   not $g / |g|$: layer 1 moves many powers of ten more than with SGD, and still far less
#   than layer 12. The step adapts only to gradients well above $\epsilon$.
# - **The collapsed forward signal.** With $\epsilon = 10^{-20}$ the first layers move as much
#   as the last ones or more, and (a) still learns nothing: its last features still do not
#   depend on the input (their spread is printed above), because whatever the first layers
#   do reaches the readout shrunk by the same factor per layer as before. Larger steps do
#   not, in 400 of them, undo a factor that every layer applies to what it passes on.
#
# What rescues (a) is a change to the network, not to the optimiser: weights large enough for
# $\chi_1$ to approach one, normalisation, or residual connections, as the [cures
# pages](../../initialisation/) measure.
#
# ## What each network learnt
#
# The plane coloured by the class each network predicts after SGD, with the training points on
# top.

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
# or give it residual connections. Each of these changes how far its first layers move, and
# `relative_spread` of its last layer says whether its features still depend on the input.
