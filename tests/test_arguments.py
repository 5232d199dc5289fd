"""Every public function refuses invalid arguments with a TypeError or ValueError that names them.

The pattern is scikit-learn's: the accepted arguments are declared once, as one good call per
function (`GOOD_CALLS`); the invalid values follow from each parameter's annotation (`INVALID`).
Every parameter of every public function is then fed each invalid value of its kind, one at a
time, with the other arguments good. A new public function without an entry fails
`test_every_public_function_has_a_good_call`.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest

import vangrad
from vangrad import datasets, plotting, recurrent_training, training

MODULES = (vangrad, plotting, training, recurrent_training, datasets)


@cache
def objects() -> dict[str, Any]:
    """Small real results, for the functions that take one (plots of a sweep, a training run)."""
    grid = vangrad.sweep([3, 5], width=4, batch_size=4, trials=2, weight_scales=[0.5, 1.0])
    flow = vangrad.simulate(depth=3, width=4, activation="tanh", init="he_normal", batch_size=4)
    x, y = datasets.spirals(8, seed=0)
    network = training.make_network(
        2, 2, depth=2, width=4, activation="tanh", init="xavier_normal", seed=0
    )
    result = training.train(network, x, y, steps=3, batch_size=4, learning_rate=0.1)
    phase = vangrad.phase_diagram([1.0, 2.0], [0.0, 0.1], depth=3, width=4, batch_size=2)
    spectra = vangrad.jacobian_singular_values([2], 4, activation="tanh", sigma_w2=1.0)
    lstm = vangrad.backprop_through_time(
        np.ones((3, 2, 3)), "lstm", vangrad.recurrent_params("lstm", 3, 2, seed=0)
    )
    sequences, targets = recurrent_training.adding_problem(4, 6, seed=0)
    recurrent_model = recurrent_training.make_recurrent_model("lstm", 2, 3, seed=0)
    return {
        "lstm_flow": lstm,
        "sequences": sequences,
        "targets": targets,
        "recurrent_model": recurrent_model,
        "grid": grid,
        "flow": flow,
        "x": x,
        "y": y,
        "network": network,
        "result": result,
        "phase": phase,
        "spectrum": spectra[2],
    }


RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 3))
WEIGHTS = [RNG.normal(size=(3, 3)) for _ in range(2)]
SEQUENCE = RNG.normal(size=(3, 2, 3))  # (T, batch, N) for an LSTM of H = 2
LSTM_PARAMS = {
    "weight_ih": RNG.normal(size=(8, 3)),
    "weight_hh": RNG.normal(size=(8, 2)),
    "bias_ih": np.zeros(8),
    "bias_hh": np.zeros(8),
}


def good_calls() -> dict[str, dict[str, Any]]:
    """The arguments of one call that works, for every public function, by qualified name."""
    o = objects()
    return {
        "vangrad.backprop": {"x": X, "weights": WEIGHTS, "activation": "tanh"},
        "vangrad.backprop_through_time": {
            "x": SEQUENCE,
            "cell": "lstm",
            "params": LSTM_PARAMS,
            "h0": np.zeros((2, 2)),
            "c0": np.zeros((2, 2)),
            "upstream": np.ones((2, 2)),
            "keep_grads": False,
        },
        "vangrad.backprop_blocks": {
            "x": np.ones((6, 4)),
            "w_in": [np.ones((4, 12)), np.ones((4, 8))],
            "w_out": [np.ones((4, 4)), np.ones((8, 4))],
            "placement": "pre",
            "norm": "layer",
            "activation": "relu",
            "branches": ["attention", "mlp"],
            "tokens": 3,
            "heads": 2,
            "skip_scale": 1.0,
            "branch_scale": 1.0,
            "final_norm": True,
            "upstream": np.ones((6, 4)),
            "loss": "random",
            "seed": 0,
            "keep_grads": False,
        },
        "vangrad.chi": {"q": 1.0, "sigma_w2": 1.0, "sigma_b2": 0.0, "activation": "tanh"},
        "vangrad.chi_1": {"sigma_w2": 1.0, "sigma_b2": 0.0, "activation": "tanh"},
        "vangrad.clip_by_norm": {"grads": [np.ones(3)], "max_norm": 1.0},
        "vangrad.clip_by_value": {"grads": [np.ones(3)], "max_value": 1.0},
        "vangrad.critical_line": {"q_star": 0.5, "activation": "tanh"},
        "vangrad.critical_sigma_w2": {"sigma_b2": 0.0, "activation": "tanh"},
        "vangrad.depth_scale": {"chi_value": 0.5},
        "vangrad.fixed_point": {"sigma_w2": 1.5, "sigma_b2": 0.1, "activation": "tanh"},
        "vangrad.gaussian_expectation": {"function": np.tanh, "q": 1.0},
        "vangrad.get_activation": {"activation": "tanh"},
        "vangrad.get_initializer": {"init": "he_normal"},
        "vangrad.gradient_bound": {"num_layers": 3, "derivative_max": 0.25},
        "vangrad.init_sigma_w2": {"init": "he_normal", "width": 8, "weight_scale": 1.0},
        "vangrad.jacobian_singular_values": {
            "depths": [1, 2],
            "width": 4,
            "activation": "tanh",
            "sigma_w2": 1.0,
            "sigma_b2": 0.0,
            "weight_distribution": "gaussian",
            "trials": 1,
            "seed": 0,
        },
        "vangrad.log10_gradient_bound": {"num_layers": 3, "derivative_max": 0.25},
        "vangrad.phase_diagram": {
            "sigma_w2": [1.0, 2.0],
            "sigma_b2": [0.0],
            "depth": 3,
            "width": 4,
            "batch_size": 2,
            "trials": 1,
            "activation": "tanh",
            "seed": 0,
        },
        "vangrad.predicted_jacobian_variance": {
            "depth": [1, 2],
            "activation": "tanh",
            "sigma_w2": 1.0,
            "sigma_b2": 0.0,
        },
        "vangrad.predicted_log10_grad_norms": {
            "depth": 3,
            "sigma_w2": 1.0,
            "sigma_b2": 0.0,
            "activation": "tanh",
            "input_second_moment": 1.0,
        },
        "vangrad.predict_blocks": {
            "block": "pre",
            "depth": 3,
            "width": 4,
            "activation": "relu",
            "hidden": 8,
            "init": "xavier_normal",
            "branch_scale": 0.5,
            "input_variance": 1.0,
        },
        "vangrad.recurrent_params": {
            "cell": "lstm",
            "input_size": 3,
            "hidden_size": 2,
            "init_ih": "xavier_uniform",
            "init_hh": "orthogonal",
            "gain": 1.0,
            "input_gain": 1.0,
            "bias": True,
            "forget_bias": 1.0,
            "trials": 2,
            "seed": 0,
            "dtype": "float64",
        },
        "vangrad.simulate": {
            "depth": 2,
            "width": 3,
            "activation": "tanh",
            "init": "he_normal",
            "weight_scale": 1.0,
            "bias_std": 0.0,
            "batch_size": 2,
            "batchnorm": False,
            "layernorm": False,
            "residual": False,
            "trials": 1,
            "seed": 0,
            "dtype": "float64",
            "loss": "sum",
            "keep_grads": False,
        },
        "vangrad.simulate_blocks": {
            "block": "post",
            "depth": 2,
            "width": 4,
            "batch_size": 2,
            "norm": "layer",
            "activation": "relu",
            "hidden": 8,
            "attention": True,
            "tokens": 2,
            "heads": 2,
            "init": "xavier_normal",
            "branch_scale": 1.0,
            "trials": 1,
            "seed": 0,
            "loss": "random",
            "keep_grads": False,
        },
        "vangrad.simulate_mean_field": {
            "depth": 2,
            "width": 3,
            "sigma_w2": 1.0,
            "sigma_b2": 0.0,
            "activation": "tanh",
            "batch_size": 2,
            "trials": 1,
            "seed": 0,
            "loss": "random",
            "dtype": "float64",
        },
        "vangrad.sweep": {
            "depths": [2],
            "width": 3,
            "batch_size": 2,
            "activations": ["tanh"],
            "inits": ["he_normal"],
            "weight_scales": [1.0],
            "trials": 1,
            "batchnorm": False,
            "layernorm": False,
            "residual": False,
            "seed": 0,
            "dtype": "float64",
        },
        "vangrad.variance_map": {"q": 1.0, "sigma_w2": 1.0, "sigma_b2": 0.0, "activation": "tanh"},
        "vangrad.variance_sequence": {
            "depth": 3,
            "sigma_w2": 1.0,
            "sigma_b2": 0.0,
            "activation": "tanh",
            "input_second_moment": 1.0,
        },
        "vangrad.plotting.plot_activation": {
            "activation": "tanh",
            "tangent_at": 0.5,
            "span": 4.0,
            "shade": True,
        },
        "vangrad.plotting.plot_comparison": {"grid": o["grid"], "depth": 5, "weight_scale": 1.0},
        "vangrad.plotting.plot_decision_boundary": {
            "network": o["network"],
            "x": o["x"],
            "y": o["y"],
            "resolution": 10,
        },
        "vangrad.plotting.plot_gradient_bound": {"num_layers": 3, "derivative_max": 0.25},
        "vangrad.plotting.plot_gradient_profile": {"flow": o["flow"], "label": "a"},
        "vangrad.plotting.plot_gradient_through_time": {
            "flow": o["lstm_flow"],
            "label": "a",
            "predicted_factor": 0.9,
            "cell_state": True,
        },
        "vangrad.plotting.plot_layer_variances": {"flows": {"a": o["flow"]}},
        "vangrad.plotting.plot_loss_curves": {"results": {"a": o["result"]}, "window": 2},
        "vangrad.plotting.plot_loss_surface": {
            "x": np.arange(3.0),
            "y": np.arange(2.0),
            "loss": np.ones((2, 3)),
            "paths": {"a": np.zeros((2, 2))},
            "xlabel": "w",
            "ylabel": "b",
        },
        "vangrad.plotting.plot_phase_diagram": {"grid": o["phase"]},
        "vangrad.plotting.plot_predicted_profile": {
            "flow": o["flow"],
            "predicted": np.zeros(4),
            "label": "a",
        },
        "vangrad.plotting.plot_singular_values": {
            "spectra": {"a": o["spectrum"]},
            "bins": 5,
            "floor": 1e-4,
        },
        "vangrad.plotting.plot_sweep": {
            "grid": o["grid"],
            "activation": "tanh",
            "init": "xavier_normal",
            "batchnorm": False,
            "residual": False,
        },
        "vangrad.plotting.plot_update_ratios": {
            "result": o["result"],
            "steps_per_column": 1,
            "vmin": -6.0,
            "vmax": -1.0,
        },
        "vangrad.plotting.saturation_edge": {"activation": "tanh", "limit": 50.0, "side": "left"},
        "vangrad.training.loss_and_gradients": {"network": o["network"], "x": o["x"], "y": o["y"]},
        "vangrad.training.make_network": {
            "n_features": 2,
            "n_classes": 2,
            "depth": 2,
            "width": 3,
            "activation": "tanh",
            "init": "he_normal",
            "weight_scale": 1.0,
            "batchnorm": False,
            "layernorm": False,
            "residual": False,
            "seed": 0,
        },
        "vangrad.training.layer_outputs": {"network": o["network"], "x": o["x"]},
        "vangrad.training.predict_proba": {"network": o["network"], "x": o["x"]},
        "vangrad.training.train": {
            "network": o["network"],
            "x": o["x"],
            "y": o["y"],
            "steps": 2,
            "batch_size": 4,
            "learning_rate": 0.1,
            "optimizer": "adam",
            "momentum": 0.0,
            "betas": (0.9, 0.999),
            "epsilon": 1e-8,
            "seed": 0,
        },
        "vangrad.recurrent_training.adding_problem": {"length": 4, "samples": 3, "seed": 0},
        "vangrad.recurrent_training.make_recurrent_model": {
            "cell": "lstm",
            "input_size": 2,
            "hidden_size": 3,
            "output_size": 1,
            "forget_bias": 1.0,
            "init_hh": "orthogonal",
            "gain": 1.0,
            "seed": 0,
        },
        "vangrad.recurrent_training.recurrent_loss_and_gradients": {
            "model": o["recurrent_model"],
            "x": o["sequences"],
            "y": o["targets"],
        },
        "vangrad.recurrent_training.train_recurrent": {
            "model": o["recurrent_model"],
            "x": o["sequences"],
            "y": o["targets"],
            "steps": 2,
            "batch_size": 4,
            "learning_rate": 0.01,
            "max_norm": 1.0,
            "record_at": [0, 1],
            "seed": 0,
        },
        "vangrad.datasets.spirals": {
            "n_per_class": 4,
            "classes": 2,
            "turns": 1.0,
            "noise": 0.05,
            "seed": 0,
        },
    }


def public_functions() -> dict[str, Callable[..., Any]]:
    """Every function in the `__all__` of a public module, by the name it is documented under."""
    found: dict[str, Callable[..., Any]] = {}
    for module in MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value) and value not in found.values():
                found[f"{module.__name__}.{name}"] = value
    return found


# Values no parameter of that kind accepts, by kind. Each must be refused with an error naming
# the parameter.
INVALID: dict[str, list[object]] = {
    "int": ["3", 2.5, True],
    "float": ["0.5", math.nan, True],
    "bool": ["yes", 1],
    "name": [3, "no-such-name"],
    "array": ["text", object()],
    "sequence": ["text", 5],
    "object": [3],
}
# Parameters that take any value of their type (a free-text label), or nothing checkable.
FREE = {"label", "xlabel", "ylabel"}


def kind(annotation: str) -> str:
    """The kind of a parameter, from its annotation (a string: the modules postpone them)."""
    first = annotation.split(" | ", maxsplit=1)[0]
    if first.startswith(("Sequence", "list")):
        return "sequence"
    if first == "ArrayLike" or first.startswith("np.ndarray"):
        return "array"
    simple = {"int": "int", "float": "float", "bool": "bool", "str": "name"}
    return simple.get(first, "object")


def cases() -> list[tuple[str, str, object]]:
    found = []
    for qualified, function in sorted(public_functions().items()):
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD or name in FREE:
                continue
            values = INVALID[kind(str(parameter.annotation))]
            found.extend((qualified, name, value) for value in values)
    return found


def test_every_public_function_has_a_good_call() -> None:
    assert sorted(public_functions()) == sorted(good_calls())
    for qualified, function in public_functions().items():
        function(**good_calls()[qualified])  # the declared call works


def _label(value: object) -> str:
    """A test id that is the same in every process (no memory address): pytest-xdist needs it."""
    return "object()" if type(value) is object else repr(value)


@pytest.mark.parametrize(
    ("qualified", "parameter", "value"),
    cases(),
    ids=[f"{q}-{p}-{_label(v)}" for q, p, v in cases()],
)
def test_an_invalid_argument_is_named(qualified: str, parameter: str, value: object) -> None:
    call = {**good_calls()[qualified], parameter: value}
    with pytest.raises((TypeError, ValueError)) as info:
        public_functions()[qualified](**call)
    message = str(info.value)
    assert re.search(rf"\b{parameter}\b", message), (
        f"the message does not name {parameter}: {message}"
    )
    # Raised by vangrad's own checks, not from deep inside numpy or matplotlib.
    assert "vangrad" in info.traceback[-1].path.parts, info.traceback[-1].path
