"""MkDocs hook: draw the site's figures and tables from `vangrad` while the site builds.

A page refers to a figure by its file name, `![alt text](figures/NAME.svg)`, and to a table by a
marker line, `<!-- table: NAME -->`. Both are made by calling `vangrad`, never pasted in, so a
change to the package shows on the site at the next build.

They are drawn in fresh Python processes (this file run as a script) and cached under
`.cache/figures/KEY/`, where KEY hashes `vangrad`'s source, this file, the engine chosen
(`VANGRAD_ENGINE`) and the pinned dependencies (hooks/_build_inputs.py). A fresh process
matters under `mkdocs serve`: the server keeps its first import of `vangrad`, so drawing
in-process after an edit would store old pictures under the new key. Unchanged code costs
nothing; any change redraws everything. Drawing takes seconds, so it starts with the build, in
two processes, and mkdocs waits only where it needs a result: a table for a page, every figure
before copying them.
"""

from __future__ import annotations

import functools
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display during a build

import matplotlib.pyplot as plt
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

try:  # as mkdocs loads a hook, and as `python hooks/NAME.py` runs one: from this folder
    from _build_inputs import code_digest
except ImportError:  # as the tests import it, from the checkout's root
    from hooks._build_inputs import code_digest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "figures"
FIGURE_DIR = "figures"
_TABLE_MARKER = re.compile(r"^<!-- table: (?P<name>[\w-]+) -->$", re.MULTILINE)
_current: dict[str, Any] = {}


# --- what is drawn (runs in the child process only) ----------------------------------------------


def _figures() -> dict[str, Callable[[], Any]]:
    """Name -> function drawing the figure on new Axes and returning one of them."""
    import numpy as np

    from vangrad import get_activation, log10_gradient_bound, simulate, sweep
    from vangrad.plotting import (
        plot_activation,
        plot_gradient_bound,
        plot_gradient_profile,
        plot_sweep,
    )

    def sigmoid_and_tanh_saturation() -> Any:
        _, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharey=True)
        plot_activation("sigmoid", tangent_at=2.0, ax=left)
        plot_activation("tanh", tangent_at=2.0, ax=right)
        right.set_ylabel("")
        return left

    def profiles(title: str, runs: list[tuple[str, dict[str, Any]]]) -> Any:
        """Measured gradient profiles, one `simulate` call and one curve per labelled run."""
        _, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
        for label, options in runs:
            plot_gradient_profile(simulate(**options), label=label, ax=ax)
        ax.set_title(title)
        return ax

    def deep_sigmoid_profiles() -> Any:
        depth = 30
        common = {"depth": depth, "width": 128, "batch_size": 32, "activation": "sigmoid"}
        ax = profiles(
            "30 sigmoid layers: measured gradient (median, quartiles of 8 nets) vs bound",
            [
                (
                    f"measured, LeCun weights x{gain:g}",
                    {
                        **common,
                        "init": "lecun_normal",
                        "weight_scale": gain,
                        "trials": 8,
                        "seed": 1,
                    },
                )
                for gain in (1.0, 2.0, 4.0)
            ],
        )
        bound = np.append(log10_gradient_bound(depth), 0.0)  # the output layer: no derivative yet
        ax.plot(
            np.arange(depth + 1),
            bound,
            color="black",
            linestyle=":",
            label="bound $0.25^k$ (k layers below the output)",
        )
        ax.legend(fontsize="small")
        return ax

    def tanh_chain_scales() -> Any:
        # The chains of the page's first snippet: x = 1, as in the experiment it redoes.
        from vangrad import backprop

        _, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
        for scale in (0.5, 1.0, 1.5, 3.0):
            rng = np.random.default_rng(0)
            weights = list(rng.normal(0.0, scale, size=(20, 200, 1, 1)))
            flow = backprop(np.ones((200, 1, 1)), weights, "tanh")
            plot_gradient_profile(flow, label=f"weight scale {scale}", ax=ax)
        ax.set_title("20 tanh units of width 1, input x = 1: median and quartiles of 200 chains")
        return ax

    def tanh_sweep() -> Any:
        grid = sweep(
            list(range(5, 51, 5)),
            width=32,
            batch_size=16,
            inits=["lecun_normal"],
            weight_scales=np.geomspace(0.25, 4, 13).round(3).tolist(),
            trials=4,
        )
        _, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
        return plot_sweep(grid, ax=ax)

    def relu_vs_sigmoid() -> Any:
        common = {"depth": 50, "width": 128, "batch_size": 32, "trials": 8, "loss": "random"}
        runs = [
            ("sigmoid", "xavier_normal"),
            ("tanh", "xavier_normal"),
            ("relu", "he_normal"),
            ("leaky_relu", "he_normal"),
        ]
        return profiles(
            "50 layers, 128 units, random loss: median and quartiles of 8 networks",
            [(f"{a}, {i}", {**common, "activation": a, "init": i}) for a, i in runs],
        )

    def relu_family() -> Any:
        _, axes = plt.subplots(1, 4, figsize=(14, 4.2), layout="constrained", sharey=True)
        family = [
            get_activation("relu"),
            get_activation("leaky_relu", slope=0.1),
            get_activation("elu"),
            get_activation("gelu"),
        ]
        for ax, activation in zip(axes, family, strict=True):
            plot_activation(activation, span=4.0, ax=ax)
            ax.set_ylim(-1.5, 4.0)
        for ax in axes[1:]:
            ax.set_ylabel("")
        return axes[0]

    def relu_inits() -> Any:
        common = {
            "depth": 60,
            "width": 128,
            "batch_size": 32,
            "activation": "relu",
            "trials": 8,
            "loss": "random",
        }
        choices = [
            ("xavier_normal", None),
            ("he_normal", None),
            ("orthogonal", None),
            ("orthogonal", 2**0.5),
        ]
        return profiles(
            "ReLU, 60 layers of 128 units, random loss: median and quartiles of 8 networks",
            [
                (
                    init if scale is None else f"{init}, gain {scale:.3g}",
                    {**common, "init": init, "weight_scale": scale},
                )
                for init, scale in choices
            ],
        )

    def residual_profiles() -> Any:
        common = {"depth": 100, "width": 64, "batch_size": 32, "trials": 8, "loss": "random"}
        runs = [
            ("sigmoid, plain", {"activation": "sigmoid", "init": "xavier_normal"}),
            (
                "sigmoid, residual",
                {"activation": "sigmoid", "init": "xavier_normal", "residual": True},
            ),
            ("tanh, plain", {"activation": "tanh", "init": "xavier_normal"}),
            ("tanh, residual", {"activation": "tanh", "init": "xavier_normal", "residual": True}),
            (
                "relu, he_normal, residual",
                {"activation": "relu", "init": "he_normal", "residual": True},
            ),
            (
                "relu, he_normal x 0.1, residual",
                {"activation": "relu", "init": "he_normal", "weight_scale": 0.1, "residual": True},
            ),
        ]
        return profiles(
            "100 layers, 64 units, random loss: median and quartiles of 8 networks",
            [(label, {**common, **options}) for label, options in runs],
        )

    return {
        "gradient-bound": lambda: plot_gradient_bound(30),
        "residual-profiles": residual_profiles,
        "relu-inits": relu_inits,
        "relu-vs-sigmoid": relu_vs_sigmoid,
        "relu-family": relu_family,
        "tanh-chain-scales": tanh_chain_scales,
        "tanh-sweep": tanh_sweep,
        "deep-sigmoid-profiles": deep_sigmoid_profiles,
        "sigmoid-tanh-saturation": sigmoid_and_tanh_saturation,
        **_saturation_figures(),
        **_theory_figures(),
        **_recurrent_figures(),
        **_gates_figures(),
        **_clipping_figures(),
        **_normalisation_figures(),
        **_together_figures(),
    }


def _together_figures() -> dict[str, Callable[[], Any]]:
    """The figure of together.md: every architecture against every activation and init."""
    from vangrad import sweep
    from vangrad.plotting import plot_comparison

    def comparison() -> Any:
        # The same two grids as the snippet on the "Putting it together" page.
        setup = {
            "width": 64,
            "batch_size": 32,
            "activations": ["sigmoid", "tanh", "relu"],
            "inits": ["normal", "xavier_normal", "he_normal", "orthogonal"],
            "weight_scales": [1.0],
            "residual": [False, True],
            "trials": 8,
            "loss": "random",
        }
        grids = [
            sweep([50], **setup, batchnorm=[False, True]),
            sweep([50], **setup, layernorm=True),
        ]
        _, ax = plt.subplots(figsize=(10, 6.4), layout="constrained")
        return plot_comparison(grids, ax=ax)

    return {"comparison": comparison}


def _normalisation_figures() -> dict[str, Callable[[], Any]]:
    """The figure of normalisation.md: the gradient at every level of 48-block stacks."""
    import numpy as np

    from vangrad import BLOCKS, predict_blocks, simulate_blocks

    def block_gradients() -> Any:
        # The page's settings: width 256, 8 samples in each of 4 networks, 48 blocks.
        depth, width = 48, 256
        _, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
        levels = np.arange(depth + 1)
        labels = {
            "pre": "pre-LN",
            "post": "post-LN",
            "deepnorm": "DeepNorm",
            "rezero": "ReZero",
            "skipinit": "SkipInit, 1/sqrt(L)",
        }
        for block in BLOCKS:
            flow = simulate_blocks(block, depth, width, batch_size=8, trials=4)
            # Relative to the upstream gradient's norm per sample, sqrt(d).
            median = np.median(flow.log10_grad_norms, axis=(0, 1)) - 0.5 * np.log10(width)
            predicted = predict_blocks(block, depth, width).log10_grad_norms
            (line,) = ax.plot(levels, 10**median, label=labels[block])
            ax.plot(levels, 10 ** (predicted - 0.5 * np.log10(width)), "--", color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("level l of the stream (0: the input, 48: the top)")
        ax.set_ylabel("|dL/dx_l| per sample / |upstream|")
        ax.set_title("48 blocks of width 256: median over 32 samples; mean field dashed")
        ax.legend()
        return ax

    return {"block-gradients": block_gradients}


def _recurrent_figures() -> dict[str, Callable[[], Any]]:
    """The figures of the pages on recurrent networks."""
    import numpy as np

    from vangrad import backprop_through_time, chi_1, recurrent_params
    from vangrad.plotting import plot_gradient_through_time

    def recurrent_decay() -> Any:
        # The settings of the per-step table on recurrent/through-time.md.
        width, steps, trials = 256, 100, 4
        _, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
        for sigma_w2 in (0.5, 1.0, 1.5, 2.0):
            rng = np.random.default_rng(1)
            params = recurrent_params(
                "rnn_tanh",
                width,
                width,
                init_ih="normal",
                input_gain=np.sqrt(0.1 / width),
                init_hh="normal",
                gain=np.sqrt(sigma_w2 / width),
                bias=False,
                trials=trials,
                seed=rng,
            )
            x = rng.normal(size=(steps, 8, width))
            upstream = rng.normal(size=(trials, 8, width))
            flow = backprop_through_time(x, "rnn_tanh", params, upstream=upstream)
            predicted = float(np.sqrt(chi_1(sigma_w2, 0.1, "tanh")))
            label = f"sigma_w^2 = {sigma_w2:g}: predicted x{predicted:.3f} per step (dashed)"
            plot_gradient_through_time(flow, label=label, predicted_factor=predicted, ax=ax)
        ax.set_title("tanh recurrent networks, 256 units: measured (4 nets) and mean field")
        return ax

    return {"recurrent-decay": recurrent_decay}


def _gates_figures() -> dict[str, Callable[[], Any]]:
    """The figures of recurrent/gates.md."""
    import numpy as np

    from vangrad import backprop_through_time, recurrent_params
    from vangrad.plotting import plot_gradient_through_time

    def lstm_forget_bias() -> Any:
        # The settings of the page's forget-bias table: 64 units, 100 steps, 8 networks.
        width, steps, trials = 64, 100, 8
        _, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
        for cell, bias in (
            ("rnn_tanh", None),
            ("lstm", 0.0),
            ("lstm", 1.0),
            ("lstm", 3.0),
            ("lstm", 5.0),
        ):
            rng = np.random.default_rng(0)
            biases = {} if bias is None else {"forget_bias": bias}
            params = recurrent_params(cell, width, width, trials=trials, seed=rng, **biases)
            x = rng.normal(size=(steps, 16, width))
            upstream = rng.normal(size=(trials, 16, width))
            flow = backprop_through_time(x, cell, params, upstream=upstream)
            label = (
                "tanh network, dL/dh_t" if bias is None else f"LSTM, forget bias {bias:g}, dL/dc_t"
            )
            plot_gradient_through_time(flow, label=label, cell_state=bias is not None, ax=ax)
        ax.set_ylabel("gradient norm relative to the last step")
        ax.set_title("64 units, 100 steps: the LSTM's cell-state gradient by forget bias (8 nets)")
        return ax

    return {"lstm-forget-bias": lstm_forget_bias}


def _clipping_figures() -> dict[str, Callable[[], Any]]:
    """The figures of recurrent/clipping.md: the one-unit network's cliff and a descent over it."""
    import numpy as np

    from vangrad import backprop_through_time, clip_by_norm
    from vangrad.plotting import plot_loss_surface

    # The page's settings: s_t = sigmoid(w s_(t-1) + b) from s_0 = 1/2, loss 1/2 (s_50 - 0.7)^2.
    steps, target = 50, 0.7

    def one_unit(w: Any, b: Any, *, grads: bool = True) -> tuple[Any, Any]:
        w, b = np.broadcast_arrays(np.asarray(w, dtype=float), np.asarray(b, dtype=float))
        n = w.size
        params = {
            "weight_ih": np.zeros((n, 1, 1)),
            "weight_hh": w.reshape(n, 1, 1),
            "bias_ih": b.reshape(n, 1),
            "bias_hh": np.zeros((n, 1)),
        }
        flow = backprop_through_time(
            np.zeros((steps, 1, 1)),
            "rnn_sigmoid",
            params,
            h0=np.full((n, 1, 1), 0.5),
            upstream=lambda h: h - target,
            keep_grads=grads,
        )
        loss = (0.5 * (flow.output[:, 0, 0] - target) ** 2).reshape(w.shape)
        if not grads:
            return loss, None
        dw, db = flow.param_grads["weight_hh"][:, 0, 0], flow.param_grads["bias_ih"][:, 0]
        return loss, np.stack([dw, db], axis=-1).reshape(*w.shape, 2)

    def surface(w_range: tuple[float, float], b_range: tuple[float, float], n: int) -> Any:
        w, b = np.linspace(*w_range, n), np.linspace(*b_range, n)
        loss, _ = one_unit(w[None, :], b[:, None], grads=False)
        return w, b, loss

    def cliff() -> Any:
        _, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
        plot_loss_surface(*surface((2.0, 8.0), (-5.0, 0.0), 241), ax=left)
        left.set_title("loss 1/2 (s_50 - 0.7)^2 of one sigmoid unit, from s_0 = 1/2")
        w = 5.0
        distance = np.geomspace(1e-9, 1.0, 400)
        for side, label in ((1.0, "b above -w/2"), (-1.0, "b below -w/2")):
            _, grads = one_unit(w, -w / 2 + side * distance)
            right.loglog(distance, np.linalg.norm(grads, axis=-1), label=label)
        right.set_xlabel("distance |b + w/2| from the cliff's centre, w = 5")
        right.set_ylabel("gradient norm ||(dL/dw, dL/db)||")
        right.set_title("the gradient across the cliff")
        right.grid(visible=True, which="major", linestyle="--", alpha=0.5)
        right.legend(fontsize="small")
        return left

    def descent() -> Any:
        # The page's 500 runs; the figure follows the first that was thrown, as the page does.
        runs, iterations, rate = 500, 100, 1.0
        rng = np.random.default_rng(0)
        start = np.stack([np.full(runs, 5.0), rng.uniform(-4.0, -2.6, runs)], axis=-1)
        paths, longest = {}, {}
        for max_norm in (None, 1.0):
            theta, path, longest[max_norm] = start.copy(), [start], np.zeros(runs)
            for _ in range(iterations):
                _, grads = one_unit(theta[:, 0], theta[:, 1])
                if max_norm is not None:
                    grads = np.array([clip_by_norm([g], max_norm)[0][0] for g in grads])
                step = rate * np.linalg.norm(grads, axis=-1)
                longest[max_norm] = np.maximum(longest[max_norm], step)
                theta = theta - rate * grads
                path.append(theta)
            paths[max_norm] = np.stack(path, axis=1)
        run = int(np.argmax(longest[None] > 10))
        w_end, b_end = paths[None][run, -1]
        _, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        plot_loss_surface(
            *surface((3.5, 5.5), (-4.0, -1.0), 241),
            paths={
                f"run {run}, unclipped: thrown to ({w_end:.0f}, {b_end:.0f})": paths[None][run],
                f"run {run}, clipped to norm 1": paths[1.0][run],
            },
            ax=ax,
        )
        ax.set_title(f"gradient descent from (w, b) = ({start[run, 0]:g}, {start[run, 1]:.2f})")
        return ax

    return {"clipping-cliff": cliff, "clipping-descent": descent}


def _saturation_figures() -> dict[str, Callable[[], Any]]:
    """The figures of the saturation page beyond the sigmoid and tanh."""
    from vangrad.plotting import plot_activation

    def softplus_saturation() -> Any:
        _, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
        return plot_activation("softplus", tangent_at=-3.0, shade=True, ax=ax)

    return {"softplus-saturation": softplus_saturation}


def _theory_figures() -> dict[str, Callable[[], Any]]:
    """The figures of the theory pages: predictions drawn beside measurements."""
    import numpy as np

    from vangrad.plotting import plot_phase_diagram, plot_predicted_profile
    from vangrad.theory import (
        critical_line,
        phase_diagram,
        predicted_log10_grad_norms,
        simulate_mean_field,
    )

    def theory_profiles() -> Any:
        depth = 30
        _, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
        for activation, w2, b2 in THEORY_PROFILE_CASES:
            flow = simulate_mean_field(
                depth, 256, sigma_w2=w2, sigma_b2=b2, activation=activation, batch_size=8, trials=4
            )
            predicted = predicted_log10_grad_norms(depth, w2, b2, activation)
            label = f"{activation}, sigma_w^2 = {w2:g}, sigma_b^2 = {b2:g}"
            plot_predicted_profile(flow, predicted, label=label, ax=ax)
        ax.set_title("Gradient per layer: measured (median, quartiles of 4 nets) and predicted")
        return ax

    def edge_of_chaos() -> Any:
        grid = phase_diagram(**PHASE_DIAGRAM)
        # The critical line from q* = 0 up to the top of the grid.
        line = critical_line(np.geomspace(1e-6, 10.0, 200))
        inside = line[1] <= grid.sigma_b2[-1]
        _, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        plot_phase_diagram(grid, (line[0][inside], line[1][inside]), ax=ax)
        # The finite-depth prediction: the predicted profile's input-to-output ratio, from the
        # inputs' own variance, is 1 on this contour (a loop over grid points: each is a
        # layer-by-layer recursion).
        predicted = np.array(
            [
                [predicted_log10_grad_norms(grid.depth, w2, b2)[0] for b2 in grid.sigma_b2]
                for w2 in grid.sigma_w2
            ]
        )
        ax.contour(
            grid.sigma_w2,
            grid.sigma_b2,
            predicted.T,
            levels=[0.0],
            colors="green",
            linewidths=1.5,
            linestyles=":",
        )
        ax.plot(
            [], [], color="green", linestyle=":", label=f"predicted ratio 1 at depth {grid.depth}"
        )
        ax.legend(fontsize="small", loc="upper left")
        ax.set_title(
            f"tanh, {grid.depth} layers of {grid.width}: {grid.networks} networks, one call"
        )
        return ax

    def jacobian_spectra() -> Any:
        from vangrad.plotting import plot_singular_values

        runs = _jacobian_runs()
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        for ax, activation in zip(axes, ("tanh", "relu"), strict=True):
            depth = JACOBIAN["depths"][-1] if activation == "tanh" else JACOBIAN["depths"][1]
            spectra = {
                f"{kind}, depth {depth}": runs[activation, kind]["spectra"][depth]
                for kind in ("gaussian", "orthogonal")
            }
            plot_singular_values(spectra, ax=ax)
            ax.set_title(
                f"{activation} at chi_1 = 1, width {JACOBIAN['width']}, "
                f"{JACOBIAN['trials']} seeds pooled"
            )
        return axes[0]

    def glorot_bengio() -> Any:
        from vangrad import simulate
        from vangrad.plotting import plot_layer_variances
        from vangrad.theory import chi, init_sigma_w2, variance_sequence

        flows, predicted = {}, {}
        for init in ("legacy_uniform", "xavier_uniform"):
            flows[init] = simulate(**GLOROT_BENGIO, init=init)
            w2 = init_sigma_w2(init, GLOROT_BENGIO["width"])
            q = variance_sequence(GLOROT_BENGIO["depth"], w2)
            # Going down through layer l multiplies the variance by chi(q_l); relative to the
            # top layer's input h_{L-1}, h_l has passed layers l+1..L-1, i.e. q[l:L-1].
            steps = np.log10(chi(q[:-1], w2))
            predicted[init] = np.append(np.cumsum(steps[::-1])[::-1], 0.0)
        return plot_layer_variances(flows, predicted)

    return {
        "theory-profiles": theory_profiles,
        "edge-of-chaos": edge_of_chaos,
        "glorot-bengio": glorot_bengio,
        "jacobian-spectra": jacobian_spectra,
    }


def _theory_tables() -> dict[str, Callable[[], str]]:
    """The tables of the theory pages."""

    def jacobian_variance() -> str:
        import numpy as np

        runs = _jacobian_runs()
        rows = [
            "| activation | weights | depth | mean eigenvalue of J J^T | variance, measured "
            "| its standard error | variance, predicted | measured / predicted |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for (activation, kind), run in runs.items():
            for depth, predicted in zip(JACOBIAN["depths"], run["predicted"], strict=True):
                eigenvalues = run["spectra"][depth] ** 2
                # One variance per seed; their scatter gives the standard error of the mean.
                variances = eigenvalues.var(axis=1)
                error = variances.std(ddof=1) / np.sqrt(variances.size)
                rows.append(
                    f"| {activation} | {kind} | {depth} | {eigenvalues.mean():.3g} "
                    f"| {variances.mean():.3g} | {error:.2g} | {predicted:.3g} "
                    f"| {variances.mean() / predicted:.2f} |"
                )
        return "\n".join(rows)

    return {"jacobian-variance": jacobian_variance}


@functools.cache
def _jacobian_runs() -> dict[tuple[str, str], dict[str, Any]]:
    """Jacobian spectra at the critical point, shared by the figure and the table."""
    import numpy as np

    from vangrad.theory import critical_line, jacobian_singular_values, predicted_jacobian_variance

    tanh_w2, tanh_b2 = (float(v[0]) for v in critical_line(np.array([JACOBIAN["tanh_q_star"]])))
    settings = {"tanh": (tanh_w2, tanh_b2), "relu": (2.0, 0.0)}
    runs = {}
    for activation, (w2, b2) in settings.items():
        predicted = predicted_jacobian_variance(JACOBIAN["depths"], activation, w2, b2)
        for kind in ("gaussian", "orthogonal"):
            spectra = jacobian_singular_values(
                JACOBIAN["depths"],
                JACOBIAN["width"],
                activation=activation,
                sigma_w2=w2,
                sigma_b2=b2,
                weight_distribution=kind,
                trials=JACOBIAN["trials"],
                seed=JACOBIAN["seed"],
            )
            runs[activation, kind] = {"spectra": spectra, "predicted": predicted[kind]}
    return runs


# The runs drawn on the theory pages; their prose quotes the snippets, which rerun them.
THEORY_PROFILE_CASES = [
    ("sigmoid", 1.0, 0.0),
    ("tanh", 1.0, 0.05),
    ("relu", 2.0, 0.0),
    ("tanh", 4.0, 0.05),
]
GLOROT_BENGIO = {
    "depth": 5,
    "width": 1000,
    "activation": "tanh",
    "batch_size": 16,
    "trials": 2,
    "seed": 0,
}
JACOBIAN = {"depths": [8, 32, 128], "width": 128, "trials": 32, "seed": 0, "tanh_q_star": 0.01}
PHASE_DIAGRAM = {
    "sigma_w2": [round(0.25 + 0.125 * i, 3) for i in range(31)],
    "sigma_b2": [round(0.05 * i, 2) for i in range(21)],
    "depth": 30,
    "width": 128,
    "batch_size": 8,
    "trials": 1,
    "seed": 0,
}


def _tables() -> dict[str, Callable[[], str]]:
    """Name -> function returning a Markdown table."""
    import vangrad

    def gradient_bound_table() -> str:
        depths = (5, 10)
        rows = ["| layer (input = 1) | " + " | ".join(f"{d}-layer stack" for d in depths) + " |"]
        rows.append("|---:|" + "---:|" * len(depths))
        bounds = {d: vangrad.gradient_bound(d) for d in depths}
        for layer in range(1, max(depths) + 1):
            cells = [f"{bounds[d][layer - 1]:.3e}" if layer <= d else "" for d in depths]
            rows.append(f"| {layer} | " + " | ".join(cells) + " |")
        return "\n".join(rows)

    return {"gradient-bound": gradient_bound_table, **_theory_tables()}


# Two processes share the list of figures, so a long figure taken last would leave one of them
# drawing alone: these, the costliest, go first.
_COSTLY_FIRST = ("edge-of-chaos", "comparison", "jacobian-spectra", "relu-inits", "block-gradients")
# Outputs that share one cached computation (`_jacobian_runs`): the process that takes one of
# them takes both, instead of each process computing it.
_SHARED = {"jacobian-spectra": "jacobian", "jacobian-variance": "jacobian"}
_STYLE = {
    "svg.hashsalt": "vangrad",  # the same code draws the same bytes
    "svg.fonttype": "path",  # text as paths: no font to fetch, same look everywhere
    "figure.facecolor": "white",  # legible on the dark palette too
    "savefig.facecolor": "white",
}


def _svg(draw: Callable[[], Any]) -> bytes:
    with plt.rc_context(_STYLE):
        ax = draw()
        buffer = io.BytesIO()
        ax.figure.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(ax.figure)
    return buffer.getvalue()


def _outputs() -> list[tuple[str, Callable[[], bytes]]]:
    """Every output file and what makes its bytes: tables first, for pages wait for them."""
    tables = [
        (f"{name}.md", lambda make=make: (make() + "\n").encode())
        for name, make in _tables().items()
    ]
    figures = sorted(
        _figures().items(),
        key=lambda item: (*_COSTLY_FIRST, item[0]).index(item[0]),
    )
    return tables + [(f"{name}.svg", lambda draw=draw: _svg(draw)) for name, draw in figures]


def _claim(out: Path, key: str) -> bool:
    """Whether this process is the first to take `key` (an atomic create shared by all)."""
    try:
        os.close(os.open(out / f".claim-{key}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _write(path: Path, content: bytes) -> None:
    """Write `content` so that a reader polling for `path` never sees half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def render_all(out: Path, names: set[str] | None = None, *, shared: bool = False) -> None:
    """Write every figure (`NAME.svg`) and table (`NAME.md`), or those in `names`, into `out`.

    With `shared`, several processes draw into the same `out` at once, each taking the next
    output no other has taken; the first thing each writes is the list of all outputs.
    """
    outputs = [(f, make) for f, make in _outputs() if names is None or Path(f).stem in names]
    if shared:
        _write(out / MANIFEST, json.dumps([f for f, _ in outputs]).encode())
    mine: set[str] = set()
    for filename, make in outputs:
        key = _SHARED.get(Path(filename).stem, Path(filename).stem)
        if shared and key not in mine and not _claim(out, key):
            continue
        mine.add(key)
        _write(out / filename, make())


# --- the hook (runs inside mkdocs) ---------------------------------------------------------------

MANIFEST = ".outputs.json"
# Two drawing processes on two cores, while mkdocs renders pages and the notebooks run: the
# build is CPU-bound, and a single drawing process would be the last thing it waits for.
DRAWING_PROCESSES = 2


def _source_key() -> str:
    # The engine that draws (hooks/engine.py) is part of what a drawing depends on, as are
    # vangrad, the pinned matplotlib and this file (hooks/_build_inputs.py).
    return code_digest(Path(__file__)).hexdigest()[:16]


def _start_drawing() -> None:
    """Use the cached drawings of this code, or start drawing them in the background."""
    _stop_drawing()  # left over from a failed build under `mkdocs serve`
    key = _source_key()
    _current.clear()
    _current["final"] = CACHE / key
    if _current["final"].is_dir():
        _current["folder"] = _current["final"]
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = _current["folder"] = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=CACHE))
    children = _current["children"] = []
    for index in range(DRAWING_PROCESSES):
        with (staging / f".stderr-{index}").open("wb") as stderr:
            children.append(
                subprocess.Popen(
                    [sys.executable, __file__, str(staging), "--shared"],
                    cwd=ROOT,
                    # One BLAS thread: the figures multiply thousands of small matrices, where
                    # OpenBLAS's threads only contend (measured on a busy 2-core machine: 144 s
                    # with its default threads, 18 s with one).
                    env={**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"},
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            )


def _stop_drawing() -> None:
    for child in _current.get("children", []):
        child.kill()
        child.wait()
    if _current.get("children"):
        shutil.rmtree(_current["folder"], ignore_errors=True)
    _current.clear()


def _check_children(*, wait: bool) -> bool:
    """Whether every drawing process has ended; raise if one of them failed."""
    children = _current.get("children", [])
    for index, child in enumerate(children):
        code = child.wait() if wait else child.poll()
        if code not in (None, 0):
            stderr = (_current["folder"] / f".stderr-{index}").read_text(errors="replace")
            _stop_drawing()
            raise PluginError(f"drawing the site's figures failed:\n{stderr}")
    return all(child.poll() is not None for child in children)


def _drawn(filename: str) -> Path:
    """Where the output `filename` is, waiting for it if it is still being drawn.

    The path may not exist: then no drawing process made that output.
    """
    while True:
        path = _current["folder"] / filename
        if path.exists() or _check_children(wait=False):
            return path
        time.sleep(0.02)


def _finish_drawing() -> None:
    """Wait for the drawing processes, then store what they drew under the code's key."""
    if not _current.get("children"):
        return
    _check_children(wait=True)
    staging, final = _current["folder"], _current["final"]
    for scratch in staging.glob(".*"):
        scratch.unlink()
    for stale in CACHE.iterdir():
        if stale.is_dir() and stale not in (staging, final):
            shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(staging, final)  # atomic: a folder under a key is always complete
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)  # another build of this code was quicker
    _current["children"] = []
    _current["folder"] = final


def on_config(config: Any, **_: Any) -> Any:
    """Start drawing, so that the figures are drawn while the pages are read."""
    _start_drawing()
    return config


def on_files(files: Any, config: Any, **_: Any) -> Any:
    """Add every figure to the site as a generated file (its bytes may still be on the way)."""
    manifest = _drawn(MANIFEST)
    if manifest.is_file():  # still drawing: the processes list what they will draw
        names = json.loads(manifest.read_text(encoding="utf-8"))
    else:
        names = sorted(p.name for p in _current["folder"].iterdir())
    for name in names:
        if name.endswith(".svg"):
            path = _current["final"] / name
            files.append(File.generated(config, f"{FIGURE_DIR}/{name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace each `<!-- table: NAME -->` line by the table it names."""

    def replace(match: re.Match[str]) -> str:
        table = _drawn(f"{match.group('name')}.md")
        if not table.is_file():
            _finish_drawing()
            known = sorted(p.stem for p in _current["folder"].glob("*.md"))
            raise PluginError(
                f"{page.file.src_uri}: unknown table {match.group('name')!r}; known: {known}"
            )
        # The table's numbers say where they came from, as the prose's do (hooks/computed.py).
        origin = html.escape(f"the table {match.group('name')!r} of hooks/figures.py", quote=True)
        return (
            f'<div class="vg-computed-table" data-computed="{origin}" markdown>\n\n'
            + table.read_text(encoding="utf-8").rstrip("\n")
            + "\n\n</div>"
        )

    return _TABLE_MARKER.sub(replace, markdown)


def on_env(env: Any, **_: Any) -> Any:
    """All pages are read; the figures' files are copied next: they must be complete."""
    _finish_drawing()
    return env


def on_build_error(**_: Any) -> None:
    """Stop drawing for a build that has failed."""
    _stop_drawing()


if __name__ == "__main__":
    render_all(Path(sys.argv[1]), shared="--shared" in sys.argv[2:])
