"""recurrent_params: shapes, per-gate orthogonality, identity, Glorot's variance, forget bias."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vangrad import CELLS, backprop_through_time, recurrent_params
from vangrad._validation import CELL_GATES

N, H = 6, 16


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_shapes_follow_pytorch_and_the_engine_takes_them(cell: str) -> None:
    g = CELL_GATES[cell]
    params = recurrent_params(cell, N, H, seed=0)
    assert {k: v.shape for k, v in params.items()} == {
        "weight_ih": (g * H, N),
        "weight_hh": (g * H, H),
        "bias_ih": (g * H,),
        "bias_hh": (g * H,),
    }
    stacked = recurrent_params(cell, N, H, trials=3, bias=False, seed=0)
    assert set(stacked) == {"weight_ih", "weight_hh"}
    assert stacked["weight_hh"].shape == (3, g * H, H)
    x = np.random.default_rng(0).normal(size=(4, 2, N))
    assert backprop_through_time(x, cell, stacked).log10_grad_norms.shape == (3, 5)


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal_is_orthogonal_per_gate_block(gain: float) -> None:
    w = recurrent_params("lstm", N, H, init_hh="orthogonal", gain=gain, trials=2)["weight_hh"]
    for trial in w:
        for k in range(4):
            block = trial[k * H : (k + 1) * H]
            np.testing.assert_allclose(block @ block.T, gain**2 * np.eye(H), atol=1e-12)
        # Blocks are drawn independently: the whole (4H, H) matrix is not one orthogonal draw.
        assert not np.allclose(trial[:H], trial[H : 2 * H])
    assert not np.allclose(w[0], w[1])


def test_orthogonal_blocks_are_haar_distributed() -> None:
    """Haar measure: the mean of a diagonal entry is 0 (a sign-biased QR gives about 0.8)."""
    w = recurrent_params("rnn_tanh", N, 2, trials=4000, seed=3)["weight_hh"]
    diagonal = np.diagonal(w, axis1=-2, axis2=-1)
    assert abs(diagonal.mean()) < 5 * math.sqrt(0.5 / diagonal.size)


def test_identity_is_scaled_by_the_gain() -> None:
    params = recurrent_params("rnn_relu", N, H, init_hh="identity", gain=0.9, seed=0)
    np.testing.assert_array_equal(params["weight_hh"], 0.9 * np.eye(H))
    np.testing.assert_array_equal(params["bias_ih"], 0)
    np.testing.assert_array_equal(params["bias_hh"], 0)
    gru = recurrent_params("gru", N, H, init_hh="identity", seed=0)["weight_hh"]
    np.testing.assert_array_equal(gru, np.tile(np.eye(H), (3, 1)))


def test_glorot_blocks_have_glorots_variance() -> None:
    trials = 400
    params = recurrent_params(
        "gru", N, H, init_ih="xavier_normal", init_hh="xavier_normal", trials=trials, seed=1
    )
    for name, fan_in in (("weight_ih", N), ("weight_hh", H)):
        w = params[name]
        variance = 2 / (fan_in + H)
        standard_error = math.sqrt(2 / w.size) * variance  # of a mean of normal squares
        assert abs(float(np.mean(w**2)) - variance) < 5 * standard_error


def test_normal_takes_the_gain_as_standard_deviation() -> None:
    sigma_w = math.sqrt(1.5 / H)
    w = recurrent_params("rnn_tanh", N, H, init_hh="normal", gain=sigma_w, trials=500)["weight_hh"]
    assert float(np.mean(w**2)) == pytest.approx(sigma_w**2, rel=0.03)
    with pytest.raises(ValueError, match=r"gain is required with init 'normal'"):
        recurrent_params("rnn_tanh", N, H, init_hh="normal")
    with pytest.raises(ValueError, match=r"input_gain is required with init 'normal'"):
        recurrent_params("rnn_tanh", N, H, init_ih="normal")


def test_forget_bias_goes_into_one_bias_only() -> None:
    """PyTorch adds bias_ih and bias_hh: the f gate's total bias is exactly the forget bias."""
    params = recurrent_params("lstm", N, H, forget_bias=3.0, seed=0)
    total = params["bias_ih"] + params["bias_hh"]
    np.testing.assert_array_equal(total[H : 2 * H], 3.0)
    np.testing.assert_array_equal(np.delete(total, np.s_[H : 2 * H]), 0.0)
    np.testing.assert_array_equal(params["bias_hh"], 0.0)
    # At zero input and state, the forget gate is sigmoid(3).
    x = np.zeros((1, 1, N))
    flow = backprop_through_time(
        x, "lstm", params, c0=np.ones((1, H)), upstream=np.zeros((1, H)), keep_grads=True
    )
    np.testing.assert_allclose(flow.cell_states[1], 1 / (1 + np.exp(-3.0)))


def test_seed_reproduces_and_dtype_is_kept() -> None:
    a = recurrent_params("lstm", N, H, seed=5)
    b = recurrent_params("lstm", N, H, seed=np.random.default_rng(5))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    c = recurrent_params("lstm", N, H, seed=6)
    assert not np.allclose(a["weight_hh"], c["weight_hh"])
    f32 = recurrent_params("lstm", N, H, dtype="float32", forget_bias=1.0)
    assert all(v.dtype == np.float32 for v in f32.values())


@pytest.mark.parametrize(
    ("changes", "error", "pattern"),
    [
        ({"cell": "lsmt"}, ValueError, r"unknown cell 'lsmt'.*did you mean 'lstm'"),
        ({"init_hh": "identiy"}, ValueError, r"unknown init_hh 'identiy'.*did you mean 'identity'"),
        ({"init_ih": "identity"}, ValueError, r"unknown init_ih 'identity'"),
        ({"hidden_size": 0}, ValueError, r"hidden_size must be an integer >= 1, got 0"),
        ({"gain": -1.0}, ValueError, r"gain must be a finite number > 0"),
        ({"cell": "gru", "forget_bias": 1.0}, ValueError, r"forget_bias is the LSTM's"),
        ({"bias": False, "forget_bias": 1.0}, ValueError, r"forget_bias needs the biases"),
        ({"trials": 0}, ValueError, r"trials must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_are_named(changes: dict, error: type[Exception], pattern: str) -> None:
    arguments = {"cell": "lstm", "input_size": N, "hidden_size": H, **changes}
    with pytest.raises(error, match=pattern):
        recurrent_params(**arguments)
