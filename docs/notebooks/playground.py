# %% [markdown]
# # Playground: the classic demonstrations, redone
#
# Five widely shared explanations of vanishing gradients started this project. They are
# typical of the tutorial code that circulates on the subject, and each makes a mistake that
# is common in that code, so this notebook names them as what they are rather than as the
# last word:
#
# 1. the exercise "Vanishing Gradient Problem" of the Click4Ai coding-practice site, which
#    asks for the gradient at each layer of a sigmoid stack;
# 2. "Study Card: Vanishing Gradient Problem", an online study card (no author or date
#    given) with a chain of random sigmoid derivatives;
# 3. "Vanishing Gradients: Ungraded Lecture Notebook", a notebook of an online course (no
#    author given) that plots the sigmoid, its derivative and a tangent;
# 4. S. Thapa, "Vanishing Gradient Problem in Deep Learning", a blog post of November 2020,
#    which follows one weight through the chain rule and turns to ReLU;
# 5. "Vanishing and Exploding Gradients", a page of an online course (no author given) that
#    runs a depth-20, width-1 tanh chain at three weight scales.
#
# This notebook takes the experiment of each, runs it with `vangrad`, and says where the
# original goes wrong. Every number below is computed as the page builds.

# %%
import matplotlib.pyplot as plt
import numpy as np

from vangrad import backprop, get_activation, gradient_bound, log10_gradient_bound, simulate
from vangrad.plotting import plot_activation, plot_gradient_profile

# Smaller images than the default 100 dpi keep this page light enough to read offline quickly.
plt.rcParams["figure.dpi"] = 80

# %% [markdown]
# ## 1. The exercise: a factor of 0.25 per layer
#
# The exercise asks for the gradient magnitude at each layer of an $N$-layer sigmoid stack,
# input first, as $0.25^{N - i + 1}$ for layer $i = 1$ (the input) to $N$. `gradient_bound`
# returns exactly that list:

# %%
print(gradient_bound(5).tolist())
print(gradient_bound(3).tolist(), gradient_bound(1).tolist())

# %% [markdown]
# Three corrections. First, these numbers are an **upper bound**, and only for a chain of
# single units whose weights have size at most 1: each unit multiplies the gradient by
# $|w_l|\,\sigma'(z_l) \le 0.25$. The exercise calls them "approximately" the gradient.
#
# Second, no chain of more than one unit reaches the bound. A factor of exactly 0.25 needs
# $|w_l| = 1$ and $z_l = 0$, and only the first unit can sit at $z = 0$: every later one
# gets $z_l = w_l h_{l-1}$ with $h_{l-1} = \sigma(z_{l-1})$ strictly between 0 and 1, so
# $z_l = \pm a$ with $a$ in $(0, 1)$, never 0 (there are no biases to cancel it). From the
# third unit on it is tighter still: $z_{l-1}$ itself lies in $(-1, 1)$, so
# $h_{l-1} > \sigma(-1)$, and with $|w_l| = 1$ the factor $\sigma'(z_l)$ stays below
# $\sigma'(\sigma(-1))$ (a smaller $|w_l|$ moves $z_l$ towards 0 but lowers the factor
# $|w_l|\,\sigma'(w_l h_{l-1})$, which grows with $|w_l|$ here). The best chain of 10
# units, searched over its input and the signs of its weights (of size 1), next to the
# bound:

# %%
sigmoid = get_activation("sigmoid")
largest = sigmoid.derivative(sigmoid.function(np.array(-1.0)))
print(f"largest sigma' from the third unit on: sigma'(sigma(-1)) = {largest:.4f}, below 0.25")
# The factor |w| sigma'(w h) on a grid of |w| in [0, 1] and h in [sigma(-1), sigma(1)].
w_grid = np.linspace(0, 1, 101)[:, np.newaxis]
h_grid = sigmoid.function(np.linspace(-1, 1, 101))[np.newaxis, :]
factor = w_grid * sigmoid.derivative(w_grid * h_grid)
print(f"the factor grows with |w| at every such h: {bool(np.all(np.diff(factor, axis=0) > 0))}")
# Every input on a grid, every sign pattern (w_1 = +1: flipping it is flipping the input).
units, inputs = 10, np.linspace(-6, 6, 241)
signs = np.array([[1.0] + [(-1.0) ** (p >> i & 1) for i in range(units - 1)] for p in range(512)])
stack = np.repeat(signs, inputs.size, axis=0)  # (512 * 241, units): one chain per row
chains = backprop(
    np.tile(inputs, len(signs)).reshape(-1, 1, 1),
    [stack[:, [layer]].reshape(-1, 1, 1) for layer in range(units)],
    "sigmoid",
)
best = int(np.argmax(chains.log10_grad_norms[:, 0]))
reached = chains.log10_grad_norms[best, 0]
print(
    f"best chain of {units}: 10^{reached:.2f} (x = {inputs[best % inputs.size]:.1f}), "
    f"{10 ** (reached / units):.4f} per unit; bound 0.25^{units} = 10^{np.log10(0.25) * units:.2f}"
)

# %% [markdown]
# Third, its worked example puts layer 10 at "about 0.0000001", which is $10^{-7}$;
# $0.25^{10}$ is close to $10^{-6}$:

# %%
print(f"0.25**10 = {0.25**10:.2e}")

# %% [markdown]
# Real sigmoid networks, 10 layers of 64 units with LeCun's initialisation (16 networks, median
# and interquartile range), against the bound:

# %%
# alt: Gradient by layer, on a log axis: the bound 0.25^k is a straight dashed line falling towards
#   the input, and the measured gradients of 10-layer sigmoid networks fall beside it at a similar
#   slope.
flow = simulate(
    depth=10, width=64, batch_size=32, activation="sigmoid", init="lecun_normal", trials=16
)
ax = plot_gradient_profile(flow, label="measured: sigmoid, LeCun, width 64")
# The bound at layer l (0 = input) of 10: 0.25 ** (10 - l), and 1 at the output itself.
bound = np.append(log10_gradient_bound(10), 0.0)
ax.plot(np.arange(11), bound, linestyle="--", color="0.3", label="bound $0.25^k$")
ax.legend(fontsize="small")
ax.set_title("10 sigmoid layers: the bound and 16 measured networks")
plt.show()
relative = np.median(flow.log10_grad_norms[:, 0] - flow.log10_grad_norms[:, -1])
print(f"bound at the input: 10^{np.log10(0.25**10):.1f}; measured median: 10^{relative:.1f}")

# %% [markdown]
# ## 2. The study card: a chain of random derivatives
#
# The card multiplies the gradient, layer after layer, by $\sigma'(x)$ at a random $x$ in
# $[0, 1)$. On that interval $\sigma'$ only goes from $\sigma'(1)$ to $\sigma'(0) = 0.25$, so the
# chain falls by nearly the same factor every step. Seeded and for 1000 chains at once:

# %%
rng = np.random.default_rng(0)
factors = sigmoid.derivative(rng.random((1000, 10)))
chains = np.cumprod(factors, axis=1)
print(f"sigma'(1) = {sigmoid.derivative(np.array(1.0)):.4f}")
print(
    f"after 10 layers: median {np.median(chains[:, -1]):.2e}, "
    f"range {chains[:, -1].min():.2e} to {chains[:, -1].max():.2e}"
)

# %% [markdown]
# What the card leaves out are the **weights**: a layer multiplies the gradient by $w \cdot
# \sigma'(z)$, not by $\sigma'(z)$ alone, and its $z$ depends on the weights too. The weights
# can make the chain vanish faster or slower; the [initialisation
# page](../../initialisation/) measures by how much.
#
# ## 3. The lecture notebook: the sigmoid and its tangent
#
# The notebook plots the sigmoid, its derivative, and the tangent at a chosen point, whose
# slope is the factor a gradient picks up there: largest at 0, and small once $|z|$ is a few
# units. Shaded: where the derivative is below 1% of its peak.

# %%
# alt: The sigmoid and its derivative from -8 to 8, with the saturated tails shaded and two tangent
#   lines: a steep one at z = 0 and a flatter one at z = 3.
ax = plot_activation("sigmoid", tangent_at=0.0)
plot_activation("sigmoid", tangent_at=3.0, ax=ax)
plt.show()

# %% [markdown]
# Its `sigmoid_gradient(x)` computes `x * (1 - x)`: right when `x` is the sigmoid's **output**,
# wrong when it is the input. Fed $z = 3$ directly it returns a negative "derivative":

# %%
z = np.array(3.0)
s = sigmoid.function(z)
print(f"x * (1 - x) at the input, x = z = 3:         {z * (1 - z):.4f}")
print(f"x * (1 - x) at the output, x = sigmoid(3):   {s * (1 - s):.4f}")
print(f"the derivative sigma'(3), from vangrad:      {sigmoid.derivative(z):.4f}")

# %% [markdown]
# Its `sigmoid` is `1 / (1 + np.exp(-x))`, and `np.exp(-x)` overflows (with a warning) once
# $-x$ passes the logarithm of the largest float64; `vangrad`'s sigmoid is stable for any
# finite input (see the [pitfalls page](../../pitfalls/)):

# %%
print(f"np.exp overflows beyond {np.log(np.finfo(np.float64).max):.2f}")
print(sigmoid.function(np.array([-1000.0, 0.0, 1000.0])).tolist())

# %% [markdown]
#
# ## 4. The blog post: one weight, many layers, and ReLU
#
# The post follows one weight through the chain rule and concludes that sigmoid layers make the
# update vanish and that ReLU fixes it. Measured on 20-layer networks of width 64, ReLU with
# He's initialisation keeps the gradient's size; the sigmoid loses it:

# %%
# alt: Gradient norm by layer in 20-layer networks: the sigmoid curve falls by many powers of ten
#   towards the input, the ReLU and leaky ReLU curves with He initialisation stay roughly level.
ax = None
for activation, init in (
    ("sigmoid", "lecun_normal"),
    ("relu", "he_normal"),
    ("leaky_relu", "he_normal"),
):
    flow = simulate(
        depth=20, width=64, batch_size=32, activation=activation, init=init, trials=8, seed=1
    )
    ax = plot_gradient_profile(flow, label=f"{activation}, {init}", ax=ax)
    change = np.median(flow.log10_grad_norms[:, 0] - flow.log10_grad_norms[:, -1])
    print(f"{activation:10s} input vs output: 10^{change:.1f}")
plt.show()

# %% [markdown]
# ReLU alone is not the cure: its derivative is 1 only where the unit is active, so about half
# the units pass the gradient on, and the weights must make up for the other half. With
# LeCun's variance, half of He's, the gradient of a ReLU network shrinks layer by layer too:

# %%
flow = simulate(
    depth=20, width=64, batch_size=32, activation="relu", init="lecun_normal", trials=8, seed=1
)
change = np.median(flow.log10_grad_norms[:, 0] - flow.log10_grad_norms[:, -1])
print(f"relu with LeCun's (half He's) variance: input vs output 10^{change:.1f}")

# %% [markdown]
# ## 5. The course page: depth 20, width 1, three weight scales
#
# The course page pushes $x = 1$ through 20 tanh units of one weight each, drawn with standard
# deviation 0.5, 1.0 or 1.5, and plots the gradient at every layer. Its backward pass has a
# bug: it multiplies by $1 - a_{l-1}^2$, the tanh derivative at the layer's **input**, where the
# chain rule needs $1 - a_l^2$ at its output. With $x = 1$ the last factor is $1 - 1^2 = 0$.
# Here is that recurrence next to the engine, on the same weights:

# %%
rng = np.random.default_rng(42)
x = np.array([[1.0]])
for scale in (0.5, 1.0, 1.5):
    weights = [rng.normal(0, scale, size=(1, 1)) for _ in range(20)]
    a = [x]
    for w in weights:
        a.append(np.tanh(a[-1] @ w))
    grad = np.ones_like(a[-1])
    for i in reversed(range(20)):
        grad = (grad @ weights[i].T) * (1 - a[i] ** 2)  # the bug: a[i] should be a[i + 1]
    right = backprop(x, weights, "tanh").log10_grad_norms[0]
    print(f"scale {scale}: as published {abs(grad[0, 0]):.1f}; engine 10^{right:.2f}")

# %% [markdown]
# One chain is one random draw, so each scale gets 200 chains here, all fed $x = 1$ as on
# the course page. The median gradient per layer (with the interquartile band):

# %%
# alt: Median gradient by layer for 200 twenty-layer tanh chains of width one, fed x = 1, at weight
#   scales 0.5, 1.0 and 1.5: every curve falls towards the input, the 0.5 curve fastest and the
#   1.5 curve slowest.
tanh = get_activation("tanh")
ones = np.ones((1, 1))
SCALES = (0.5, 1.0, 1.5, 3.0)
ax = None
chains = {}
for scale in SCALES:
    # The draws of simulate(depth=20, width=1, batch_size=1, ..., seed=0): its one random
    # input first, then the weights, so the two inputs below meet the same weights.
    rng = np.random.default_rng(0)
    drawn_input = rng.standard_normal((1, 1))
    weights = list(rng.normal(0, scale, size=(20, 200, 1, 1)))
    chains[scale] = (drawn_input, weights, backprop(ones, weights, "tanh"))
    if scale < 3:
        ax = plot_gradient_profile(chains[scale][2], label=f"scale {scale}", ax=ax)
plt.show()


def median_change(flow) -> float:
    """Median over the chains of log10 of the input's gradient over the output's."""
    return float(np.median(flow.log10_grad_norms[:, 0] - flow.log10_grad_norms[:, -1]))


print(f"the random input simulate() draws at seed 0: x = {drawn_input[0, 0]:.3f}")
for scale, (drawn_input, weights, flow) in chains.items():
    other = backprop(drawn_input, weights, "tanh")
    grew = np.mean(flow.log10_grad_norms[:, 0] > flow.log10_grad_norms[:, -1])
    slope_one = np.median(tanh.derivative(weights[0][:, 0, 0]))
    slope_drawn = np.median(tanh.derivative(drawn_input[0, 0] * weights[0][:, 0, 0]))
    print(
        f"scale {scale}: x = 1 median 10^{median_change(flow):.1f} (grew in {grew:.0%}), "
        f"drawn x 10^{median_change(other):.1f}; first unit's tanh' {slope_one:.2f} "
        f"against {slope_drawn:.2f}"
    )

# %% [markdown]
# The input matters, and the experiment must use the original's. A small input keeps the
# first units near $z = 0$, where $\tanh' \approx 1$; $x = 1$ starts them at $z = w_1$, in
# the flat part of the tanh once the scale is large (the first unit's median slope is
# printed above for both inputs), and the gradient loses more there. The gap grows with the
# scale; the page this experiment redoes uses $x = 1$, and so do the curves above.
#
# The course page says large weights make gradients explode; in a chain of tanh units of
# width one they do not, at any of these scales, because a large weight also saturates the
# tanh and its derivative goes to 0. That is a property of saturating units, not of width:
# the same weights in a chain of linear units, whose derivative is 1 everywhere, multiply the
# gradient by $|w_l|$ alone, and at the larger scale it grows:

# %%
for scale in (1.5, 3.0):
    flow = backprop(ones, chains[scale][1], "linear")
    grew = np.mean(flow.log10_grad_norms[:, 0] > flow.log10_grad_norms[:, -1])
    print(f"linear, scale {scale}: median 10^{median_change(flow):.1f}, grew in {grew:.0%}")

# %% [markdown]
# For saturating units, exploding needs width: see the [exploding gradients
# page](../../exploding/). The course page's mitigations (Xavier or He initialisation, batch
# normalisation, ReLU, residual connections) are measured on the
# [initialisation](../../initialisation/) and [batch normalisation](../../batchnorm/) pages and
# trained in the [training notebook](../training/).
