"""Bad input to the recurrent engine: a clear TypeError or ValueError naming the argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from vangrad import backprop_through_time

RNG = np.random.default_rng(0)
T, B, N, H = 4, 2, 3, 5
X = RNG.normal(size=(T, B, N))
LSTM = {
    "weight_ih": RNG.normal(size=(4 * H, N)),
    "weight_hh": RNG.normal(size=(4 * H, H)),
    "bias_ih": np.zeros(4 * H),
    "bias_hh": np.zeros(4 * H),
}
RNN = {"weight_ih": RNG.normal(size=(H, N)), "weight_hh": RNG.normal(size=(H, H))}
STACKED = {name: np.stack([v, v]) for name, v in LSTM.items()}


def bptt(x: Any = X, cell: Any = "lstm", params: Any = None, **options: Any) -> Callable[[], Any]:
    return lambda: backprop_through_time(x, cell, LSTM if params is None else params, **options)


def with_param(**changes: Any) -> dict[str, Any]:
    return {**LSTM, **changes}


def without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in LSTM.items() if k not in names}


CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    (
        "unknown-cell",
        bptt(cell="lstn"),
        ValueError,
        r"unknown cell 'lstn': expected one of \['gru', 'lstm', 'rnn_relu', 'rnn_sigmoid', "
        r"'rnn_tanh'\]; did you mean 'lstm'",
    ),
    ("cell-type", bptt(cell=None), TypeError, r"cell must be a string, one of \['gru'"),
    ("params-type", bptt(params=[1, 2]), TypeError, r"params must be a mapping"),
    (
        "unknown-key",
        bptt(params=with_param(weight_xh=LSTM["weight_ih"])),
        ValueError,
        r"unknown key 'weight_xh' in params: expected \['weight_ih', 'weight_hh', 'bias_ih', "
        r"'bias_hh'\]; did you mean",
    ),
    (
        "pytorch-suffix",
        bptt(params={"weight_ih_l0": LSTM["weight_ih"], "weight_hh_l0": LSTM["weight_hh"]}),
        ValueError,
        r"unknown key 'weight_ih_l0'.*drop the '_l0'",
    ),
    (
        "missing-weight",
        bptt(params=without("weight_hh")),
        ValueError,
        r"params is missing \['weight_hh'\]",
    ),
    (
        "one-bias",
        bptt(params=without("bias_hh")),
        ValueError,
        r"params has 'bias_ih' but not 'bias_hh': give both biases",
    ),
    (
        "weight-hh-not-gates",
        bptt(params=with_param(weight_hh=RNG.normal(size=(3 * H, H)))),
        ValueError,
        r"params\['weight_hh'\] has shape \(15, 5\) but cell='lstm' stacks 4 gate block\(s\)",
    ),
    (
        "plain-cell-with-lstm-weights",
        bptt(cell="rnn_tanh"),
        ValueError,
        r"params\['weight_hh'\] has shape \(20, 5\) but cell='rnn_tanh' stacks 1 gate block",
    ),
    (
        "weight-ih-rows",
        bptt(params=with_param(weight_ih=RNG.normal(size=(3 * H, N)))),
        ValueError,
        r"params\['weight_ih'\] has shape \(15, 3\) but params\['weight_hh'\] has shape "
        r"\(20, 5\): cell='lstm' with H = 5 needs \(20, N\)",
    ),
    (
        "bias-shape",
        bptt(params=with_param(bias_hh=np.zeros(4 * H + 1))),
        ValueError,
        r"params\['bias_hh'\] has shape \(21,\) but params\['weight_hh'\] has shape \(20, 5\)",
    ),
    (
        "mixed-stacking",
        bptt(params={**STACKED, "bias_ih": LSTM["bias_ih"]}),
        ValueError,
        r"params\['bias_ih'\] has shape \(20,\) but params\['weight_hh'\] has shape \(2, 20, 5\)"
        r" \(stacked along a leading trials axis\): stack every parameter, or none",
    ),
    (
        "trials-differ",
        bptt(params={**STACKED, "weight_ih": np.stack([LSTM["weight_ih"]] * 3)}),
        ValueError,
        r"params\['weight_ih'\] stacks 3 trials but params\['weight_hh'\] stacks 2",
    ),
    (
        "weight-not-finite",
        bptt(params=with_param(weight_hh=np.full((4 * H, H), np.nan))),
        ValueError,
        r"params\['weight_hh'\] must be finite",
    ),
    ("x-not-finite", bptt(x=np.full((T, B, N), np.inf)), ValueError, r"x must be finite"),
    (
        "length-zero",
        bptt(x=np.zeros((0, B, N))),
        ValueError,
        r"x holds a sequence of length T = 0 \(shape \(0, 2, 3\)\)",
    ),
    (
        "x-2d",
        bptt(x=np.zeros((B, N))),
        ValueError,
        r"x must have 3 dimensions, got shape \(2, 3\)",
    ),
    (
        "x-4d-unstacked",
        bptt(x=np.zeros((2, T, B, N))),
        ValueError,
        r"x must have 3 dimensions, got shape \(2, 4, 2, 3\)",
    ),
    (
        "x-features",
        bptt(x=np.zeros((T, B, N + 1))),
        ValueError,
        r"params\['weight_ih'\] has shape \(20, 3\) but x has 4 features",
    ),
    (
        "x-trials",
        bptt(x=np.zeros((3, T, B, N)), params=STACKED),
        ValueError,
        r"x stacks 3 trials but the parameters stack 2",
    ),
    (
        "h0-shape",
        bptt(h0=np.zeros((B, H + 1))),
        ValueError,
        r"h0 has shape \(2, 6\) but the hidden state has shape \(2, 5\)",
    ),
    (
        "c0-shape-stacked",
        bptt(params=STACKED, c0=np.zeros((3, B, H))),
        ValueError,
        r"c0 has shape \(3, 2, 5\) but the hidden state has shape \(2, 2, 5\) or \(2, 5\)",
    ),
    ("h0-not-finite", bptt(h0=np.full((B, H), np.nan)), ValueError, r"h0 must be finite"),
    (
        "c0-for-a-gru",
        bptt(cell="rnn_tanh", params=RNN, c0=np.zeros((B, H))),
        ValueError,
        r"c0 is the LSTM's initial cell state, but cell='rnn_tanh' has none",
    ),
    (
        "upstream-shape",
        bptt(upstream=np.ones((B + 1, H))),
        ValueError,
        r"upstream has shape \(3, 5\) but the output h_T has shape \(2, 5\)",
    ),
    (
        "upstream-not-finite",
        bptt(upstream=np.full((B, H), np.nan)),
        ValueError,
        r"upstream must be finite",
    ),
    (
        "upstream-function-shape",
        bptt(upstream=lambda h: h[:1, :2]),
        ValueError,
        r"upstream\(h_T\) has shape \(1, 2\) but the output h_T has shape \(2, 5\)",
    ),
    (
        "step-upstream-shape",
        bptt(step_upstream=np.ones((T + 1, B, H))),
        ValueError,
        r"step_upstream has shape \(5, 2, 5\) but the output h_1..h_T has shape \(4, 2, 5\)",
    ),
    (
        "step-upstream-function",
        bptt(step_upstream=lambda hs: hs[:, :1, :2]),
        ValueError,
        r"step_upstream\(h_1..h_T\) has shape \(4, 1, 2\) but the output h_1..h_T has shape",
    ),
    ("keep-grads", bptt(keep_grads="yes"), TypeError, r"keep_grads must be True or False"),
]


@pytest.mark.parametrize(
    ("call", "error", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_named(
    call: Callable[[], object], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        call()


def test_the_good_calls_work() -> None:
    assert backprop_through_time(X, "lstm", STACKED).log10_grad_norms.shape == (2, T + 1)
    assert backprop_through_time(X, "rnn_tanh", RNN, h0=np.zeros((B, H))).steps == T
