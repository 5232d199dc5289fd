"""Bad input: a clear TypeError or ValueError naming the argument, never a numpy traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from vangrad import backprop, simulate, sweep
from vangrad.training import Network, make_network

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 4))
CHAIN = [RNG.normal(size=(4, 8)), RNG.normal(size=(8, 16)), RNG.normal(size=(16, 16))]
SQUARE = [RNG.normal(size=(4, 4)) for _ in range(3)]
STACK = [RNG.normal(size=(3, 4, 4)) for _ in range(2)]
GOOD = {"depth": 3, "width": 4, "activation": "tanh", "init": "he_normal", "batch_size": 2}


def sim(**changes: Any) -> Callable[[], object]:
    return lambda: simulate(**{**GOOD, **changes})


CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # sizes
    ("depth-zero", sim(depth=0), ValueError, r"depth must be an integer >= 1, got 0"),
    ("depth-float", sim(depth=2.0), TypeError, r"depth must be an integer >= 1, got 2.0"),
    ("depth-bool", sim(depth=True), TypeError, r"depth must be an integer >= 1, got True"),
    ("width-negative", sim(width=-3), ValueError, r"width must be an integer >= 1, got -3"),
    ("width-string", sim(width="8"), TypeError, r"width must be an integer >= 1, got '8'"),
    ("batch-zero", sim(batch_size=0), ValueError, r"batch_size must be an integer >= 1, got 0"),
    ("batch-bool", sim(batch_size=False), TypeError, r"batch_size must be an integer"),
    ("trials-zero", sim(trials=0), ValueError, r"trials must be an integer >= 1, got 0"),
    ("seed-negative", sim(seed=-1), ValueError, r"seed must be an integer >= 0, got -1"),
    ("seed-float", sim(seed=1.5), TypeError, r"seed must be an integer >= 0 or a numpy"),
    # names
    (
        "unknown-activation",
        sim(activation="sigmod"),
        ValueError,
        r"unknown activation 'sigmod': expected one of \['elu', .*\]; did you mean 'sigmoid'",
    ),
    (
        "activation-type",
        lambda: backprop(X, CHAIN, activation=None),
        TypeError,
        r"activation must be a name such as 'tanh' or an Activation, got NoneType",
    ),
    (
        "unknown-init",
        sim(init="he"),
        ValueError,
        r"unknown init 'he': expected one of \['he_normal', .*'xavier_uniform'\]",
    ),
    (
        "init-suggestion",
        sim(init="xavier_norma"),
        ValueError,
        r"did you mean 'xavier_normal'",
    ),
    (
        "normal-without-scale",
        sim(init="normal"),
        ValueError,
        r"weight_scale is required for init='normal'",
    ),
    ("bad-scale", sim(weight_scale=0.0), ValueError, r"weight_scale must be a finite number > 0"),
    ("bad-dtype", sim(dtype="float16"), ValueError, r"unknown dtype 'float16'"),
    ("bad-flag", sim(batchnorm="yes"), TypeError, r"batchnorm must be True or False, got 'yes'"),
    # batch normalisation with one sample
    (
        "batchnorm-batch-1-simulate",
        sim(batch_size=1, batchnorm=True),
        ValueError,
        r"batchnorm=True needs a batch of at least 2 samples.*got batch_size=1",
    ),
    (
        "batchnorm-batch-1-backprop",
        lambda: backprop(X[:1], CHAIN, batchnorm=True),
        ValueError,
        r"batchnorm=True needs a batch of at least 2 samples.*shape \(1, 4\)",
    ),
    # layer normalisation: not with batch normalisation, not over a single unit
    ("bad-layernorm-flag", sim(layernorm=1), TypeError, r"layernorm must be True or False, got 1"),
    (
        "batchnorm-and-layernorm-simulate",
        sim(batchnorm=True, layernorm=True),
        ValueError,
        r"batchnorm=True and layernorm=True cannot be combined",
    ),
    (
        "batchnorm-and-layernorm-backprop",
        lambda: backprop(X, CHAIN, batchnorm=True, layernorm=True),
        ValueError,
        r"batchnorm=True and layernorm=True cannot be combined",
    ),
    (
        "layernorm-width-1-simulate",
        sim(width=1, layernorm=True),
        ValueError,
        r"layernorm=True needs layers of at least 2 units .*got width=1",
    ),
    (
        "layernorm-width-1-backprop",
        lambda: backprop(X, [CHAIN[0], RNG.normal(size=(8, 1))], layernorm=True),
        ValueError,
        r"layernorm=True needs layers of at least 2 units .*got weights\[1\] of shape \(8, 1\)",
    ),
    (
        "layernorm-width-1-stacked",
        lambda: backprop(X, [RNG.normal(size=(3, 4, 1))], layernorm=True),
        ValueError,
        r"got weights\[0\] of shape \(3, 4, 1\)",
    ),
    (
        "sweep-batchnorm-and-layernorm",
        lambda: sweep([3], width=4, batch_size=2, batchnorm=[False, True], layernorm=True),
        ValueError,
        r"batchnorm=True and layernorm=True cannot be combined",
    ),
    (
        "sweep-layernorm-width-1",
        lambda: sweep([3], width=1, batch_size=2, layernorm=True),
        ValueError,
        r"layernorm=True needs layers of at least 2 units .*got width=1",
    ),
    (
        "make-network-batchnorm-and-layernorm",
        lambda: make_network(
            2,
            2,
            depth=2,
            width=4,
            activation="tanh",
            init="he_normal",
            batchnorm=True,
            layernorm=True,
        ),
        ValueError,
        r"batchnorm=True and layernorm=True cannot be combined",
    ),
    (
        "make-network-layernorm-width-1",
        lambda: make_network(
            2, 2, depth=2, width=1, activation="tanh", init="he_normal", layernorm=True
        ),
        ValueError,
        r"layernorm=True needs layers of at least 2 units .*got width=1",
    ),
    (
        "network-batchnorm-and-layernorm",
        lambda: Network(
            (np.ones((2, 3)), np.ones((3, 2))),
            (np.ones(3), np.ones(2)),
            make_network(2, 2, depth=1, width=3, activation="tanh", init="he_normal").activation,
            batchnorm=True,
            layernorm=True,
        ),
        ValueError,
        r"batchnorm=True and layernorm=True cannot be combined",
    ),
    # weights that do not chain
    (
        "weights-do-not-chain",
        lambda: backprop(X, [*CHAIN, RNG.normal(size=(8, 4))]),
        ValueError,
        r"weights\[3\] has shape \(8, 4\) but layer 3 outputs 16 features",
    ),
    (
        "x-does-not-chain",
        lambda: backprop(RNG.normal(size=(5, 3)), CHAIN),
        ValueError,
        r"weights\[0\] has shape \(4, 8\) but x has 3 features",
    ),
    (
        "empty-weights",
        lambda: backprop(X, []),
        ValueError,
        r"weights must hold at least one layer, got an empty list",
    ),
    (
        "weights-not-a-list",
        lambda: backprop(X, np.stack(SQUARE)),
        TypeError,
        r"weights must be a list of arrays, one per layer, got ndarray",
    ),
    (
        "weight-1d",
        lambda: backprop(X, [np.ones(4)]),
        ValueError,
        r"weights\[0\] must have 2 or 3 dimensions, got shape \(4,\)",
    ),
    (
        "mixed-stacking",
        lambda: backprop(X, [STACK[0], SQUARE[0]]),
        ValueError,
        r"weights\[1\] has shape \(4, 4\) but weights\[0\] has shape \(3, 4, 4\)",
    ),
    (
        "trial-counts-differ",
        lambda: backprop(X, [STACK[0], RNG.normal(size=(2, 4, 4))]),
        ValueError,
        r"weights\[1\] stacks 2 trials but weights\[0\] stacks 3",
    ),
    (
        "x-trials-differ",
        lambda: backprop(RNG.normal(size=(2, 5, 4)), STACK),
        ValueError,
        r"x stacks 2 trials but the weights stack 3",
    ),
    (
        "x-3d-unstacked",
        lambda: backprop(RNG.normal(size=(2, 5, 4)), SQUARE),
        ValueError,
        r"x must have 2 dimensions, got shape \(2, 5, 4\)",
    ),
    (
        "empty-batch",
        lambda: backprop(np.ones((0, 4)), SQUARE),
        ValueError,
        r"x must hold at least one sample",
    ),
    (
        "zero-width-layer",
        lambda: backprop(X, [np.ones((4, 0))]),
        ValueError,
        r"weights\[0\] has shape \(4, 0\): every dimension must be >= 1",
    ),
    # residual connections with unequal widths
    (
        "residual-unequal-widths",
        lambda: backprop(X, CHAIN, residual=True),
        ValueError,
        r"residual=True needs every layer to keep its width.*weights\[0\] has shape \(4, 8\)",
    ),
    (
        "post-residual-unequal-widths",
        lambda: backprop(X, CHAIN, residual="post"),
        ValueError,
        r"residual='post' needs every layer to keep its width.*weights\[0\] has shape \(4, 8\)",
    ),
    # non-finite or non-numeric input
    (
        "nan-input",
        lambda: backprop(np.full((5, 4), np.nan), SQUARE),
        ValueError,
        r"x must be finite: it contains inf or nan",
    ),
    (
        "inf-weight",
        lambda: backprop(X, [SQUARE[0], np.full((4, 4), np.inf)]),
        ValueError,
        r"weights\[1\] must be finite",
    ),
    (
        "string-input",
        lambda: backprop([["a"]], SQUARE),
        TypeError,
        r"x must be a numeric array, got dtype <U1",
    ),
    (
        "complex-input",
        lambda: backprop(X + 1j, SQUARE),
        TypeError,
        r"x must be real",
    ),
    (
        "upstream-shape",
        lambda: backprop(X, CHAIN, upstream=np.ones((5, 4))),
        ValueError,
        r"upstream has shape \(5, 4\) but the output h_L has shape \(5, 16\)",
    ),
    (
        "upstream-nan",
        lambda: backprop(X, CHAIN, upstream=np.full((5, 16), np.nan)),
        ValueError,
        r"upstream must be finite",
    ),
    # sweep
    (
        "sweep-depths-string",
        lambda: sweep("5", width=4, batch_size=2),
        TypeError,
        r"depths must be a list",
    ),
    # biases
    (
        "bias-std-negative",
        sim(bias_std=-0.1),
        ValueError,
        r"bias_std must be a finite number >= 0, got -0.1",
    ),
    ("bias-std-string", sim(bias_std="0.1"), TypeError, r"bias_std must be a finite number"),
    (
        "biases-not-a-list",
        lambda: backprop(X, CHAIN, biases=np.zeros(8)),
        TypeError,
        r"biases must be a list of vectors, one per layer, got ndarray",
    ),
    (
        "biases-count",
        lambda: backprop(X, CHAIN, biases=[np.zeros(8)]),
        ValueError,
        r"biases must hold one vector per layer: got 1 for 3 layers",
    ),
    (
        "biases-shape",
        lambda: backprop(X, CHAIN, biases=[np.zeros(8), np.zeros(8), np.zeros(16)]),
        ValueError,
        r"biases\[1\] has shape \(8,\) but weights\[1\] has shape \(8, 16\): expected \(16,\)",
    ),
    (
        "biases-nan",
        lambda: backprop(X, CHAIN, biases=[np.zeros(8), np.zeros(16), np.full(16, np.nan)]),
        ValueError,
        r"biases\[2\]",
    ),
    (
        "sweep-depth-zero",
        lambda: sweep([3, 0], width=4, batch_size=2),
        ValueError,
        r"depths\[1\] must be an integer >= 1, got 0",
    ),
    (
        "sweep-empty-activations",
        lambda: sweep([3], width=4, batch_size=2, activations=[]),
        ValueError,
        r"activations must not be empty",
    ),
    (
        "sweep-bad-scale",
        lambda: sweep([3], width=4, batch_size=2, weight_scales=[1.0, -2.0]),
        ValueError,
        r"weight_scales\[1\] must be a finite number > 0, got -2.0",
    ),
    (
        "sweep-batchnorm-batch-1",
        lambda: sweep([3], width=4, batch_size=1, batchnorm=True),
        ValueError,
        r"batchnorm=True needs a batch of at least 2 samples",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_raises_a_clear_error(
    call: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        call()
    # Raised by vangrad's own checks, not from inside numpy.
    assert info.traceback[-1].path.parent.name == "vangrad"
