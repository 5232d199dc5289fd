"""Backpropagation through time: every gradient checked against finite differences of an
independent forward pass, per cell, with and without biases; stacks; exactness at any length."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.finite_differences import assert_close, numerical_gradient
from vangrad import CELLS, backprop_through_time
from vangrad._validation import CELL_GATES

STEPS, BATCH, N, H = 5, 2, 3, 4


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def reference_forward(
    x: np.ndarray, cell: str, p: dict[str, np.ndarray], h: np.ndarray, c: np.ndarray | None
) -> tuple[list[np.ndarray], list[np.ndarray | None], list[np.ndarray | None]]:
    """PyTorch's equations written out block by block, independently of `vangrad.recurrent`.

    Returns every h_t, every c_t and the LSTM's output gate o_t (None elsewhere).
    """
    w_ih, w_hh = p["weight_ih"], p["weight_hh"]
    b_ih = p.get("bias_ih", np.zeros(w_ih.shape[0]))
    b_hh = p.get("bias_hh", np.zeros(w_hh.shape[0]))

    def block(k: int) -> slice:
        return slice(k * H, (k + 1) * H)

    hs, cs, os_ = [h], [c], [None]
    for x_t in x:
        if cell == "lstm":

            def pre(k: int, x_t=x_t, h=h) -> np.ndarray:
                return (
                    x_t @ w_ih[block(k)].T + b_ih[block(k)] + h @ w_hh[block(k)].T + b_hh[block(k)]
                )

            i, f, g, o = sigmoid(pre(0)), sigmoid(pre(1)), np.tanh(pre(2)), sigmoid(pre(3))
            c = f * c + i * g
            h = o * np.tanh(c)
            os_.append(o)
        elif cell == "gru":
            ax = [x_t @ w_ih[block(k)].T + b_ih[block(k)] for k in range(3)]
            ah = [h @ w_hh[block(k)].T + b_hh[block(k)] for k in range(3)]
            r = sigmoid(ax[0] + ah[0])
            z = sigmoid(ax[1] + ah[1])
            n = np.tanh(ax[2] + r * ah[2])
            h = (1 - z) * n + z * h
            os_.append(None)
        else:
            a = x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            phi = {
                "rnn_tanh": np.tanh,
                "rnn_relu": lambda v: np.maximum(v, 0),
                "rnn_sigmoid": sigmoid,
            }
            h = phi[cell](a)
            os_.append(None)
        hs.append(h)
        cs.append(c)
    return hs, cs, os_


def make_case(cell: str, bias: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    gates = CELL_GATES[cell]
    scale = 0.9 if cell == "rnn_relu" else 1.0
    params = {
        "weight_ih": rng.normal(0, scale / np.sqrt(N), size=(gates * H, N)),
        "weight_hh": rng.normal(0, scale / np.sqrt(H), size=(gates * H, H)),
    }
    if bias:
        params["bias_ih"] = rng.normal(0, 0.5, size=gates * H)
        params["bias_hh"] = rng.normal(0, 0.5, size=gates * H)
    return {
        "x": rng.normal(size=(STEPS, BATCH, N)),
        "params": params,
        "h0": rng.normal(0, 0.5, size=(BATCH, H)),
        "c0": rng.normal(0, 0.5, size=(BATCH, H)) if cell == "lstm" else None,
        "upstream": rng.normal(size=(BATCH, H)),
    }


def loss(case: dict, cell: str, **changes: np.ndarray) -> float:
    """sum(upstream * h_T) by the independent forward pass."""
    c = {**case, **changes}
    hs, _, _ = reference_forward(c["x"], cell, c["params"], c["h0"], c["c0"])
    return float(np.sum(c["upstream"] * hs[-1]))


def run(case: dict, cell: str, **options: object) -> object:
    """The engine on `case`, keeping its gradients; `options` add to or replace the case's."""
    given = {"h0": case["h0"], "c0": case["c0"], "upstream": case["upstream"]}
    return backprop_through_time(
        case["x"], cell, case["params"], **{**given, "keep_grads": True, **options}
    )


CELL_CASES = [(cell, bias) for cell in sorted(CELLS) for bias in (True, False)]
IDS = [f"{cell}-{'bias' if bias else 'nobias'}" for cell, bias in CELL_CASES]


@pytest.mark.parametrize(("cell", "bias"), CELL_CASES, ids=IDS)
def test_forward_matches_the_equations(cell: str, bias: bool) -> None:
    case = make_case(cell, bias)
    flow = run(case, cell)
    hs, cs, _ = reference_forward(case["x"], cell, case["params"], case["h0"], case["c0"])
    np.testing.assert_allclose(flow.hidden_states, np.stack(hs), rtol=1e-12, atol=1e-14)
    if cell == "lstm":
        np.testing.assert_allclose(flow.cell_states, np.stack(cs), rtol=1e-12, atol=1e-14)
    else:
        assert flow.cell_states is None
        assert flow.log10_cell_grad_norms is None


@pytest.mark.parametrize(("cell", "bias"), CELL_CASES, ids=IDS)
def test_input_state_and_sequence_gradients(cell: str, bias: bool) -> None:
    case = make_case(cell, bias)
    flow = run(case, cell)
    assert_close(flow.grads[0], numerical_gradient(lambda h: loss(case, cell, h0=h), case["h0"]))
    numeric_x = numerical_gradient(lambda x: loss(case, cell, x=x), case["x"])
    assert_close(flow.input_grads, numeric_x)
    np.testing.assert_allclose(
        flow.log10_input_grad_norms,
        np.log10(np.linalg.norm(numeric_x, axis=(-2, -1))),
        atol=1e-6,
    )
    np.testing.assert_array_equal(flow.grads[-1], case["upstream"])


@pytest.mark.parametrize(("cell", "bias"), CELL_CASES, ids=IDS)
def test_parameter_gradients(cell: str, bias: bool) -> None:
    case = make_case(cell, bias)
    flow = run(case, cell)
    assert set(flow.param_grads) == set(case["params"]) == set(flow.log10_param_grad_norms)
    for name, value in case["params"].items():

        def of_param(v: np.ndarray, name: str = name) -> float:
            return loss(case, cell, params={**case["params"], name: v})

        numeric = numerical_gradient(of_param, value)
        assert flow.param_grads[name].shape == value.shape
        assert_close(flow.param_grads[name], numeric)
        expected = np.log10(np.linalg.norm(numeric))
        assert flow.log10_param_grad_norms[name] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("cell", "bias"), CELL_CASES, ids=IDS)
def test_intermediate_gradients_are_node_gradients(cell: str, bias: bool) -> None:
    """dLoss/dh_t with h_t a node: perturb h_t (c_t held fixed) and run the tail from it."""
    case = make_case(cell, bias)
    flow = run(case, cell)
    hs, cs, os_ = reference_forward(case["x"], cell, case["params"], case["h0"], case["c0"])
    for t in range(STEPS + 1):

        def tail(h: np.ndarray, c: np.ndarray | None, t: int = t) -> float:
            if t == STEPS:
                return float(np.sum(case["upstream"] * h))
            return loss(case, cell, x=case["x"][t:], h0=h, c0=c)

        numeric = numerical_gradient(lambda h, t=t: tail(h, cs[t]), hs[t])
        assert_close(flow.grads[t], numeric)
        assert flow.log10_grad_norms[t] == pytest.approx(
            np.log10(np.linalg.norm(numeric)), abs=1e-6
        )
        if cell == "lstm":
            # c_t as a node reaches the loss through h_t = o_t tanh(c_t) too (c_0 does not:
            # h_0 is given).
            def through_c(c: np.ndarray, t: int = t) -> float:
                h = hs[t] if t == 0 else os_[t] * np.tanh(c)
                return tail(h, c)

            numeric_c = numerical_gradient(through_c, cs[t])
            assert_close(flow.cell_grads[t], numeric_c)
            expected = np.log10(np.linalg.norm(numeric_c))
            assert flow.log10_cell_grad_norms[t] == pytest.approx(expected, abs=1e-6)


def test_a_wrong_gate_wiring_is_caught() -> None:
    """The finite-difference check fails when the LSTM's f and i blocks trade places."""
    case = make_case("lstm", True)
    params = case["params"]
    swapped = {
        name: np.concatenate([v[H : 2 * H], v[:H], v[2 * H :]]) for name, v in params.items()
    }
    flow = run({**case, "params": swapped}, "lstm")
    numeric = numerical_gradient(lambda h: loss(case, "lstm", h0=h), case["h0"])
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(flow.grads[0], numeric)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_stacked_trials_equal_separate_runs(cell: str) -> None:
    cases = [make_case(cell, True, seed) for seed in range(3)]
    stacked = {name: np.stack([c["params"][name] for c in cases]) for name in cases[0]["params"]}
    x = np.stack([c["x"] for c in cases])
    h0 = np.stack([c["h0"] for c in cases])
    flow = backprop_through_time(x, cell, stacked, h0=h0, keep_grads=True)
    assert flow.log10_grad_norms.shape == (3, STEPS + 1)
    for k, case in enumerate(cases):
        one = backprop_through_time(case["x"], cell, case["params"], h0=case["h0"], keep_grads=True)
        np.testing.assert_allclose(flow.log10_grad_norms[k], one.log10_grad_norms, rtol=1e-12)
        np.testing.assert_allclose(flow.hidden_states[k], one.hidden_states, rtol=1e-12)
        for name in stacked:
            np.testing.assert_allclose(
                flow.param_grads[name][k], one.param_grads[name], rtol=1e-10, atol=1e-14
            )
            assert flow.log10_param_grad_norms[name][k] == pytest.approx(
                one.log10_param_grad_norms[name], abs=1e-12
            )
    # A sequence shared by every trial is the same as the sequence repeated.
    shared = backprop_through_time(cases[0]["x"], cell, stacked)
    repeated = backprop_through_time(np.stack([cases[0]["x"]] * 3), cell, stacked)
    np.testing.assert_allclose(shared.log10_grad_norms, repeated.log10_grad_norms, rtol=1e-12)


def test_default_loss_is_the_sum_and_upstream_may_be_a_function() -> None:
    case = make_case("gru", True)
    ones = backprop_through_time(case["x"], "gru", case["params"])
    explicit = backprop_through_time(case["x"], "gru", case["params"], upstream=np.ones((BATCH, H)))
    np.testing.assert_array_equal(ones.log10_grad_norms, explicit.log10_grad_norms)
    target = np.full((BATCH, H), 0.3)
    squared = backprop_through_time(
        case["x"], "gru", case["params"], upstream=lambda h: h - target, keep_grads=True
    )
    np.testing.assert_allclose(squared.grads[-1], squared.output - target)
    assert squared.steps == STEPS


def contracting_case(steps: int, width: int = 64, batch: int = 4) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(1)
    params = {
        "weight_ih": rng.normal(0, 0.5 / np.sqrt(3), size=(width, 3)),
        "weight_hh": rng.normal(0, np.sqrt(0.5 / width), size=(width, width)),
    }
    return rng.normal(size=(steps, batch, 3)), params


def test_ten_thousand_steps_stay_exact_in_log_space() -> None:
    """A contracting tanh RNN: the true norm at t = 0 is far below float64's range.

    Checked against the product of per-step factors, computed here with a unit vector
    renormalised at every step (exact in log space for a different reason).
    """
    x, params = contracting_case(10_000, width=16, batch=1)
    flow = backprop_through_time(x, "rnn_tanh", params)
    log10 = flow.log10_grad_norms
    assert np.isfinite(log10).all()
    assert log10[0] < -300
    assert flow.grad_norms[0] == 0.0  # the plain float underflowed; the log did not
    hs = flow.hidden_states[:, 0]
    v = np.ones(16)
    total = np.log10(np.linalg.norm(v))
    expected = [total]
    v /= np.linalg.norm(v)
    for t in range(10_000, 0, -1):
        v = (v * (1 - hs[t] ** 2)) @ params["weight_hh"]
        norm = np.linalg.norm(v)
        total += np.log10(norm)
        expected.append(total)
        v /= norm
    np.testing.assert_allclose(log10, expected[::-1], rtol=0, atol=1e-9)


def test_ten_thousand_steps_of_width_64_take_seconds() -> None:
    x, params = contracting_case(10_000)
    start = time.perf_counter()
    for cell, gates in (("rnn_tanh", 1), ("lstm", 4)):
        rng = np.random.default_rng(0)
        p = {
            name: rng.normal(0, 0.1, size=(gates * v.shape[0], v.shape[1]))
            for name, v in params.items()
        }
        flow = backprop_through_time(x, cell, p)
        assert np.isfinite(flow.log10_grad_norms).all()
        assert all(np.isfinite(v) for v in flow.log10_param_grad_norms.values())
    # Seconds on an idle machine (about 2 s for both); generous for a shared CI runner.
    assert time.perf_counter() - start < 120


def test_parameter_gradients_survive_a_vanishing_tail() -> None:
    """Where the early steps' terms are far below float64's range, the sum keeps the rest."""
    x, params = contracting_case(3000, width=16)
    flow = backprop_through_time(x, "rnn_tanh", params, keep_grads=True)
    short = backprop_through_time(x[-50:], "rnn_tanh", params, h0=flow.hidden_states[-51])
    for name in params:
        # Steps before the last 50 add less than 1e-12 of the gradient.
        assert flow.log10_param_grad_norms[name] == pytest.approx(
            short.log10_param_grad_norms[name], abs=1e-9
        )


def test_an_overflowing_relu_rnn_is_recorded() -> None:
    rng = np.random.default_rng(0)
    params = {"weight_ih": rng.normal(size=(8, 2)), "weight_hh": 30 * np.eye(8)}
    flow = backprop_through_time(np.abs(rng.normal(size=(400, 2, 2))), "rnn_relu", params)
    assert flow.overflow_step is not None
    assert 100 < flow.overflow_step < 400
    ok = backprop_through_time(np.abs(rng.normal(size=(20, 2, 2))), "rnn_relu", params)
    assert ok.overflow_step is None


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_loss_on_every_step(cell: str) -> None:
    """step_upstream: loss = sum_t sum(G_t * h_t) + sum(upstream * h_T), checked as above."""
    case = make_case(cell, True)
    direct = np.random.default_rng(5).normal(size=(STEPS, BATCH, H))

    def full_loss(**changes: np.ndarray) -> float:
        c = {**case, "direct": direct, **changes}
        hs, _, _ = reference_forward(c["x"], cell, c["params"], c["h0"], c["c0"])
        steps = np.stack(hs[1:])
        return float(np.sum(c["upstream"] * hs[-1]) + np.sum(c["direct"][-len(steps) :] * steps))

    flow = run(case, cell, step_upstream=direct)
    assert_close(flow.grads[0], numerical_gradient(lambda h: full_loss(h0=h), case["h0"]))
    for name, value in case["params"].items():
        numeric = numerical_gradient(
            lambda v, name=name: full_loss(params={**case["params"], name: v}), value
        )
        assert_close(flow.param_grads[name], numeric)
    hs, cs, _ = reference_forward(case["x"], cell, case["params"], case["h0"], case["c0"])
    for t in range(1, STEPS + 1):
        # The tail from h_t: the loss reads h_t itself, then the steps after it.
        def tail(h: np.ndarray, t: int = t) -> float:
            rest = (
                0.0 if t == STEPS else full_loss(x=case["x"][t:], h0=h, c0=cs[t], direct=direct[t:])
            )
            own = np.sum(direct[t - 1] * h) + (np.sum(case["upstream"] * h) if t == STEPS else 0)
            return float(own + rest)

        numeric = numerical_gradient(tail, hs[t])
        assert_close(flow.grads[t], numeric)
    # A function of h_1..h_T gives the same, and upstream=0 leaves the steps' loss alone.
    as_function = run(case, cell, step_upstream=lambda hs: direct + 0 * hs, keep_grads=False)
    np.testing.assert_array_equal(as_function.log10_grad_norms, flow.log10_grad_norms)
    only_steps = backprop_through_time(
        case["x"], cell, case["params"], upstream=0.0, step_upstream=direct
    )
    assert np.isfinite(only_steps.log10_grad_norms).all()


def test_a_loss_on_every_step_stays_exact_when_the_tail_vanished() -> None:
    """The direct gradient at step t can be 10^300 times what arrives from later steps."""
    x, params = contracting_case(2000, width=16, batch=1)
    direct = np.zeros((2000, 1, 16))
    direct[10] = 1.0  # the loss reads h_11 too
    flow = backprop_through_time(x, "rnn_tanh", params, step_upstream=direct)
    alone = backprop_through_time(x[:11], "rnn_tanh", params, upstream=np.ones((1, 16)))
    # Below step 11 the h_T path has vanished: the gradient is h_11's own, exactly.
    np.testing.assert_allclose(flow.log10_grad_norms[:12], alone.log10_grad_norms, atol=1e-12)
    assert flow.log10_grad_norms[500] < -150


def test_per_step_factor_approaches_mean_field_at_large_width() -> None:
    """A tanh RNN with W_hh ~ N(0, sigma_w^2 / H) and an input adding variance 0.1 to each
    pre-activation: mean-field theory predicts sqrt(chi_1(sigma_w^2, 0.1)) per step.

    At width 1024 we measured it within 0.001 (four networks); at 256 it is about 0.013 above
    at sigma_w^2 = 0.5, a finite-width effect. Here width 512, two networks, a loose check.
    """
    from vangrad import chi_1, recurrent_params

    width, steps, batch, trials = 512, 60, 8, 2
    for sigma_w2 in (0.5, 1.5):
        rng = np.random.default_rng(0)
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
        x = rng.normal(size=(steps, batch, width))
        upstream = rng.normal(size=(trials, batch, width))
        flow = backprop_through_time(x, "rnn_tanh", params, upstream=upstream)
        t = np.arange(10, steps - 9)
        slope = np.polyfit(t, flow.log10_grad_norms.mean(axis=0)[10 : steps - 9], 1)[0]
        measured = 10 ** (-slope)
        assert measured == pytest.approx(float(np.sqrt(chi_1(sigma_w2, 0.1))), abs=0.015)


def test_the_cell_state_plot_needs_an_lstm() -> None:
    import matplotlib.pyplot as plt

    from vangrad import recurrent_params
    from vangrad.plotting import plot_gradient_through_time

    params = recurrent_params("rnn_tanh", 3, 4, trials=2, seed=0)
    flow = backprop_through_time(np.ones((5, 2, 3)), "rnn_tanh", params)
    with pytest.raises(ValueError, match=r"cell_state=True needs an LSTM's flow; .*'rnn_tanh'"):
        plot_gradient_through_time(flow, cell_state=True)
    lstm = backprop_through_time(
        np.ones((5, 2, 3)), "lstm", recurrent_params("lstm", 3, 4, trials=2, seed=0)
    )
    ax = plot_gradient_through_time(lstm, cell_state=True, predicted_factor=0.5)
    assert ax.get_ylabel() == "||dLoss/dc_t|| relative to the last step"
    # The dashed prediction starts at the last step's median and falls by log10(0.5) per step.
    np.testing.assert_allclose(ax.lines[1].get_ydata(), (5 - np.arange(6)) * np.log10(0.5))
    plt.close("all")


def test_kept_gradients_beyond_the_float_range_become_inf_without_a_warning() -> None:
    from vangrad import recurrent_params

    # A ReLU network whose gradient grows 1.2-fold per step, from an upstream gradient of 1e305:
    # 50 steps take it past float64's range while the states stay below 1e4.
    params = recurrent_params("rnn_relu", 2, 3, init_hh="identity", gain=1.2, bias=False, seed=0)
    params["weight_ih"] = np.abs(params["weight_ih"])  # positive inputs keep every unit active
    flow = backprop_through_time(
        np.ones((50, 1, 2)), "rnn_relu", params, upstream=1e305, keep_grads=True
    )
    assert flow.overflow_step is None
    assert flow.log10_grad_norms[0] > 308
    assert np.isfinite(flow.log10_grad_norms).all()
    assert np.isinf(flow.grads[0]).all()
    assert np.isinf(flow.param_grads["weight_hh"]).all()
