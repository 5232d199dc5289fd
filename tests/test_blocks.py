"""Residual blocks with normalisation: every gradient checked against finite differences of an
independent forward pass, for every placement and normalisation; per-sample measurements
against batches of one; intermediate gradients against the stack above them; mean field against
the measurements."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tests.finite_differences import assert_close, numerical_gradient
from vangrad.block_theory import branch_gains, predict_blocks
from vangrad.blocks import (
    BLOCKS,
    NORMS,
    PLACEMENTS,
    backprop_blocks,
    block_settings,
    block_weights,
    deepnorm_constants,
    normalise_rms,
    normalise_rms_backward,
    simulate_blocks,
)

D, M, BATCH, DEPTH = 5, 7, 4, 3
EPSILON = 1e-5  # the variance's epsilon, as in every normalisation of the package


def layer_norm(v: np.ndarray, axis: int) -> np.ndarray:
    return (v - v.mean(axis=axis, keepdims=True)) / np.sqrt(
        v.var(axis=axis, keepdims=True) + EPSILON
    )


def reference_norm(norm: str, v: np.ndarray) -> np.ndarray:
    """The three normalisations written out from their definitions."""
    if norm == "rms":
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + EPSILON)
    return layer_norm(v, axis=-2 if norm == "batch" else -1)


def gelu(v: np.ndarray) -> np.ndarray:
    """GELU's tanh approximation, the registry's (Hendrycks and Gimpel 2016, as in GPT-2)."""
    return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))


def reference_attention(u: np.ndarray, w_qkv: np.ndarray, tokens: int, heads: int) -> np.ndarray:
    """Softmax self-attention, sequence by sequence and head by head, with plain loops."""
    d = u.shape[-1]
    width = d // heads
    q, k, v = u @ w_qkv[:, :d], u @ w_qkv[:, d : 2 * d], u @ w_qkv[:, 2 * d :]
    out = np.zeros_like(u)
    for start in range(0, len(u), tokens):
        rows = slice(start, start + tokens)
        for h in range(heads):
            cols = slice(h * width, (h + 1) * width)
            scores = q[rows, cols] @ k[rows, cols].T / math.sqrt(width)
            weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
            out[rows, cols] = weights @ v[rows, cols]
    return out


def reference_output(case: dict, **changes: object) -> np.ndarray:
    """The stack's output by the equations in `vangrad.blocks`' docstring, independently."""
    c = {**case, **changes}
    phi = np.tanh if c["activation"] == "tanh" else gelu
    x = c["x"]
    blocks = zip(c["w_in"], c["w_out"], c["scales"], c["branches"], strict=True)
    for w1, w2, s, branch in blocks:
        u = reference_norm(c["norm"], x) if c["placement"] == "pre" else x
        if branch == "attention":
            hidden = reference_attention(u, w1, c["tokens"], c["heads"])
        else:
            hidden = phi(u @ w1)
        total = c["alpha"] * x + s * (hidden @ w2)
        x = reference_norm(c["norm"], total) if c["placement"] == "post" else total
    return reference_norm(c["norm"], x) if c["final_norm"] else x


def loss(case: dict, **changes: object) -> float:
    return float(np.sum(case["upstream"] * reference_output(case, **changes)))


def make_case(
    placement: str, norm: str, activation: str, final_norm: bool, attention: bool = False
):
    """Three MLP blocks on 4 samples; or attention, MLP, attention on 2 sequences of 3."""
    rng = np.random.default_rng(0)
    d = 4 if attention else D
    branches = ("attention", "mlp", "attention") if attention else ("mlp",) * DEPTH
    rows = 6 if attention else BATCH
    w_in, w_out = [], []
    for branch in branches:
        hidden = 3 * d if branch == "attention" else M
        back = d if branch == "attention" else M
        w_in.append(rng.normal(0, 1 / np.sqrt(d), (d, hidden)))
        w_out.append(rng.normal(0, 1 / np.sqrt(back), (back, d)))
    return {
        "x": rng.normal(size=(rows, d)),
        "w_in": w_in,
        "w_out": w_out,
        "scales": rng.uniform(0.5, 1.5, DEPTH),
        "alpha": 1.3,
        "upstream": rng.normal(size=(rows, d)),
        "placement": placement,
        "norm": norm,
        "activation": activation,
        "final_norm": final_norm,
        "branches": branches,
        "tokens": 3 if attention else 1,
        "heads": 2 if attention else 1,
    }


def run(case: dict, **options: object):
    settings = {
        "placement": case["placement"],
        "norm": case["norm"],
        "activation": case["activation"],
        "skip_scale": case["alpha"],
        "branch_scale": case["scales"],
        "final_norm": case["final_norm"],
        "upstream": case["upstream"],
        "branches": list(case["branches"]),
        "tokens": case["tokens"],
        "heads": case["heads"],
        "keep_grads": True,
    }
    return backprop_blocks(case["x"], case["w_in"], case["w_out"], **{**settings, **options})


CASES = [
    (placement, norm, activation, final, attention)
    for placement in PLACEMENTS
    for norm in NORMS
    for activation in ("tanh", "gelu")
    for final in (False, True)
    for attention in (False, True)
    if (placement != "none" or final or norm == "layer") and (activation == "gelu" or not attention)
]
IDS = [
    "-".join([p, n, a, "final" if f else "nofinal", "attention" if t else "mlp"])
    for p, n, a, f, t in CASES
]


@pytest.mark.parametrize(("placement", "norm", "activation", "final", "attention"), CASES, ids=IDS)
def test_every_gradient_matches_finite_differences(
    placement: str, norm: str, activation: str, final: bool, attention: bool
) -> None:
    case = make_case(placement, norm, activation, final, attention)
    flow = run(case)
    np.testing.assert_allclose(flow.output, reference_output(case), rtol=1e-12, atol=1e-12)
    assert_close(flow.grads[0], numerical_gradient(lambda x: loss(case, x=x), case["x"]))
    for name, kept in (("w_in", flow.w_in_grads), ("w_out", flow.w_out_grads)):
        for index in range(DEPTH):

            def of_weight(w: np.ndarray, name: str = name, index: int = index) -> float:
                changed = list(case[name])
                changed[index] = w
                return loss(case, **{name: changed})

            assert_close(kept[index], numerical_gradient(of_weight, case[name][index]))
    numeric = numerical_gradient(lambda s: loss(case, scales=s), case["scales"])
    assert_close(flow.branch_scale_grads, numeric)


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_intermediate_gradients_are_those_of_the_stack_above(
    placement: str, attention: bool
) -> None:
    # dLoss/dx_l is the input gradient of blocks l+1..L run from x_l: a second route to it.
    case = make_case(placement, "layer", "gelu", final_norm=True, attention=attention)
    flow = run(case)
    tokens = case["tokens"]
    for level in range(1, DEPTH):
        below = {name: case[name][:level] for name in ("w_in", "w_out", "scales", "branches")}
        x_level = reference_output({**case, "final_norm": False}, **below)
        above = {name: case[name][level:] for name in ("w_in", "w_out", "scales", "branches")}
        top = run({**case, **above, "x": x_level})
        np.testing.assert_allclose(flow.grads[level], top.grads[0], rtol=1e-10, atol=1e-13)
        per_sequence = top.grads[0].reshape(-1, tokens * top.grads[0].shape[-1])
        expected = np.log10(np.linalg.norm(per_sequence, axis=-1))
        np.testing.assert_allclose(flow.log10_grad_norms[:, level], expected, atol=1e-12)


def test_a_wrong_normalisation_backward_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forgetting the projection in RMSNorm's backward (dz = s * dy) must fail the check above.
    from vangrad import blocks

    case = make_case("pre", "rms", "tanh", final_norm=True)
    monkeypatch.setattr(blocks, "normalise_rms_backward", lambda dy, y, s: dy * s)
    flow = run(case)
    numeric = numerical_gradient(lambda x: loss(case, x=x), case["x"])
    error = np.linalg.norm(flow.grads[0] - numeric) / np.linalg.norm(numeric)
    assert error > 1e-3


def test_rms_norm_backward_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    z, dy = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    y, s = normalise_rms(z)
    numeric = numerical_gradient(lambda v: float(np.sum(dy * normalise_rms(v)[0])), z)
    assert_close(normalise_rms_backward(dy, y, s), numeric)


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_per_sample_norms_are_those_of_a_batch_of_one(norm: str, attention: bool) -> None:
    # A sample is a row, or with attention a sequence of rows: run alone, it gives the same
    # gradient norms, and its weight gradients (explicit matrices) the norms measured per
    # sample in the batch (by the Gram matrices, for sequences).
    case = make_case("post", norm, "gelu", final_norm=False, attention=attention)
    flow = run(case)
    tokens = case["tokens"]
    for sample in range(len(case["x"]) // tokens):
        rows = slice(sample * tokens, (sample + 1) * tokens)
        alone = run({**case, "x": case["x"][rows], "upstream": case["upstream"][rows]})
        measured = flow.log10_grad_norms[sample]
        np.testing.assert_allclose(measured, alone.log10_grad_norms[0], atol=1e-12)
        for name in ("w_in", "w_out"):
            measured = getattr(flow, f"log10_{name}_grad_norms")[sample]
            expected = [np.log10(np.linalg.norm(g)) for g in getattr(alone, f"{name}_grads")]
            np.testing.assert_allclose(measured, expected, atol=1e-10)


def test_stacked_trials_equal_separate_runs() -> None:
    rng = np.random.default_rng(2)
    w_in, w_out = block_weights(rng, DEPTH, D, hidden=M, trials=3)
    x = rng.normal(size=(BATCH, D))
    scales = rng.uniform(0.5, 1.5, (3, DEPTH))
    stacked = backprop_blocks(x, w_in, w_out, placement="pre", branch_scale=scales, seed=5)
    upstream = np.random.default_rng(5).standard_normal((3, BATCH, D))
    upstream *= np.sqrt(BATCH * D) / np.linalg.norm(upstream, axis=(1, 2), keepdims=True)
    for t in range(3):
        alone = backprop_blocks(
            x,
            [w[t] for w in w_in],
            [w[t] for w in w_out],
            placement="pre",
            branch_scale=scales[t],
            upstream=upstream[t],
        )
        np.testing.assert_allclose(stacked.log10_grad_norms[t], alone.log10_grad_norms, atol=1e-12)
        np.testing.assert_allclose(stacked.stream_rms[t], alone.stream_rms, rtol=1e-12)


def test_rezero_blocks_are_the_identity_and_their_scales_still_learn() -> None:
    case = make_case("none", "layer", "gelu", final_norm=False)
    flow = run(case, branch_scale=np.zeros(DEPTH), skip_scale=1.0)
    assert np.array_equal(flow.output, case["x"])
    for g in flow.grads:
        assert np.array_equal(g, case["upstream"])  # the Jacobian is exactly the identity
    assert np.all(np.isneginf(flow.log10_w_out_grad_norms))
    numeric = numerical_gradient(lambda s: loss({**case, "alpha": 1.0}, scales=s), np.zeros(DEPTH))
    assert_close(flow.branch_scale_grads, numeric)
    assert np.all(np.abs(flow.branch_scale_grads) > 0)


def test_log_space_keeps_gradients_far_below_the_float_range() -> None:
    case = make_case("pre", "layer", "gelu", final_norm=True)
    # A norm near 1e-301: its square, and every square np.linalg.norm would take, is 0.0.
    tiny = run({**case, "upstream": case["upstream"] * 2.0**-1000})
    plain = run(case)
    shift = -1000 * np.log10(2.0)
    np.testing.assert_allclose(tiny.log10_grad_norms, plain.log10_grad_norms + shift, atol=1e-9)
    assert np.all(np.isfinite(tiny.log10_grad_norms))


def test_the_sum_loss_is_removed_by_a_final_layer_norm() -> None:
    case = make_case("pre", "layer", "gelu", final_norm=True)
    flow = run(case, upstream=None, loss="sum")
    np.testing.assert_allclose(flow.grads[-1], 0.0, atol=1e-12)


def test_named_blocks() -> None:
    alpha, beta = deepnorm_constants(48)  # 24 layers of two blocks: N = 24
    assert alpha == pytest.approx((2 * 24) ** 0.25)
    assert beta == pytest.approx((8 * 24) ** -0.25)
    assert block_settings("deepnorm", 48)["skip_scale"] == alpha
    assert block_settings("rezero", 10)["branch_scale"] == 0.0
    assert block_settings("skipinit", 16)["branch_scale"] == 0.25
    assert block_settings("pre", 4)["final_norm"] is True
    assert block_settings("post", 4, branch_scale=0.5)["branch_scale"] == 0.5
    assert set(BLOCKS) == {"pre", "post", "deepnorm", "rezero", "skipinit"}
    assert branch_gains(64) == pytest.approx((0.4, 1.6))


def per_network(log10_norms: np.ndarray) -> np.ndarray:
    """`log10` of the root mean square over the samples, per network: mean field's quantity."""
    return 0.5 * np.log10(np.mean(10.0 ** (2 * log10_norms), axis=-2))


def assert_within_spread(measured: np.ndarray, predicted: np.ndarray, slack: float) -> None:
    """The mean over networks within 4 standard errors of the prediction, plus `slack`."""
    mean = measured.mean(axis=0)
    error = measured.std(axis=0, ddof=1) / np.sqrt(len(measured))
    worst = np.max(np.abs(mean - predicted) - 4 * error)
    assert worst < slack, f"off the prediction by {worst:.4f} beyond 4 standard errors"


@pytest.mark.parametrize(("block", "activation"), list(itertools.product(BLOCKS, ["relu", "gelu"])))
def test_mean_field_predicts_the_measurements(block: str, activation: str) -> None:
    # 8 networks of width 128, 12 blocks. The slack (0.01 in log10, 2.3 %) covers the
    # finite-width corrections block_theory's docstring names, which partly cancel.
    flow = simulate_blocks(block, 12, 128, batch_size=8, trials=8, activation=activation)
    x = np.random.default_rng(0).standard_normal((8, 128))  # simulate_blocks' first draw
    q0 = float(np.mean(x**2))
    predicted = predict_blocks(block, 12, 128, activation=activation, input_variance=q0)
    assert_within_spread(np.log10(flow.stream_rms), np.log10(predicted.stream_rms), 0.01)
    assert_within_spread(per_network(flow.log10_grad_norms), predicted.log10_grad_norms, 0.01)
    if block != "rezero":
        measured = per_network(flow.log10_w_out_grad_norms)
        assert_within_spread(measured, predicted.log10_w_out_grad_norms, 0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"placement": "middle"}, "unknown placement 'middle'"),
        ({"norm": "group"}, "unknown norm 'group'"),
        ({"skip_scale": 0.0}, "skip_scale"),
        (
            {"branch_scale": np.ones(2)},
            r"branch_scale must be a number or one per block, shape \(3,\)",
        ),
        ({"upstream": np.ones((4, 5)), "loss": "sum"}, "not both"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    case = make_case("pre", "layer", "gelu", final_norm=False)
    options = {"placement": "pre", **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        backprop_blocks(case["x"], case["w_in"], case["w_out"], **options)


def test_bad_shapes_and_sizes_are_named() -> None:
    case = make_case("pre", "layer", "gelu", final_norm=False)
    x, w_in, w_out = case["x"], case["w_in"], case["w_out"]
    with pytest.raises(ValueError, match=r"w_out\[1\] has shape \(7, 4\), expected \(7, 5\)"):
        backprop_blocks(x, w_in, [w_out[0], w_out[1][:, :4], w_out[2]], placement="pre")
    with pytest.raises(ValueError, match="one matrix per block each, got 3 and 2"):
        backprop_blocks(x, w_in, w_out[:2], placement="pre")
    with pytest.raises(TypeError, match="w_in must be a list"):
        backprop_blocks(x, w_in[0], w_out, placement="pre")
    with pytest.raises(ValueError, match="batch of at least 2"):
        backprop_blocks(x[:1], w_in, w_out, placement="post", norm="batch")
    one = [np.ones((1, 3))], [np.ones((3, 1))]
    with pytest.raises(ValueError, match="needs a width d >= 2"):
        backprop_blocks(np.ones((2, 1)), *one, placement="pre")
    backprop_blocks(np.ones((2, 1)), *one, placement="none")  # nothing to normalise: fine
    with pytest.raises(ValueError, match="tokens=3 must divide the batch"):
        backprop_blocks(x, w_in, w_out, placement="pre", tokens=3)
    with pytest.raises(ValueError, match="unknown branches 'conv'"):
        backprop_blocks(x, w_in, w_out, placement="pre", branches="conv")
    with pytest.raises(ValueError, match="one branch per block: got 2 for 3 blocks"):
        backprop_blocks(x, w_in, w_out, placement="pre", branches=["mlp", "mlp"])
    with pytest.raises(ValueError, match=r"w_in\[0\] has shape \(5, 7\), expected \(5, 15\)"):
        backprop_blocks(x, w_in, w_out, placement="pre", branches="attention")
    attention = make_case("pre", "layer", "gelu", final_norm=False, attention=True)
    with pytest.raises(ValueError, match="heads=3 must divide the width d = 4"):
        run(attention, heads=3)
    with pytest.raises(ValueError, match="unknown block 'prenorm'"):
        simulate_blocks("prenorm", 2, 4, batch_size=2)
