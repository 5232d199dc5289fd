"""The recurrent engine against PyTorch, where PyTorch is installed (it is not a dependency).

Weights are PyTorch's own initial ones, loaded from `state_dict()` by stripping the `_l0`:
the way a reader would check a model. The intermediate gradients come from unrolling the
matching `nn.RNNCell`, `nn.LSTMCell` or `nn.GRUCell` by hand with `retain_grad` on every
`h_t` (and `c_t`); `h_T` and the parameters' gradients also from the whole-sequence module.
"""

from __future__ import annotations

import numpy as np
import pytest

from vangrad import backprop_through_time

torch = pytest.importorskip("torch")

T, B, N, H = 7, 3, 4, 5
# float64 on both sides: what is left is the order of summation.
RTOL = 1e-10

MODULES = {
    "rnn_tanh": (
        lambda bias: torch.nn.RNN(N, H, bias=bias),
        lambda bias: torch.nn.RNNCell(N, H, bias=bias),
    ),
    "rnn_relu": (
        lambda bias: torch.nn.RNN(N, H, nonlinearity="relu", bias=bias),
        lambda bias: torch.nn.RNNCell(N, H, bias=bias, nonlinearity="relu"),
    ),
    "lstm": (
        lambda bias: torch.nn.LSTM(N, H, bias=bias),
        lambda bias: torch.nn.LSTMCell(N, H, bias=bias),
    ),
    "gru": (
        lambda bias: torch.nn.GRU(N, H, bias=bias),
        lambda bias: torch.nn.GRUCell(N, H, bias=bias),
    ),
}


def relative_error(ours: np.ndarray, theirs: torch.Tensor) -> float:
    theirs = theirs.detach().numpy()
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell", sorted(MODULES))
def test_matches_pytorch(cell: str, bias: bool) -> None:
    torch.manual_seed(0)
    make_layer, make_cell = MODULES[cell]
    layer = make_layer(bias).double()
    params = {name.removesuffix("_l0"): p.detach().numpy() for name, p in layer.named_parameters()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(T, B, N))
    h0 = rng.normal(0, 0.5, size=(B, H))
    c0 = rng.normal(0, 0.5, size=(B, H))
    upstream = rng.normal(size=(B, H))
    lstm = cell == "lstm"
    ours = backprop_through_time(
        x, cell, params, h0=h0, c0=c0 if lstm else None, upstream=upstream, keep_grads=True
    )
    errors = {}

    # The whole-sequence module: h_T and the parameters' gradients.
    state = (torch.tensor(h0)[None], torch.tensor(c0)[None]) if lstm else torch.tensor(h0)[None]
    output, _ = layer(torch.tensor(x), state)
    (output[-1] * torch.tensor(upstream)).sum().backward()
    errors["h_T"] = relative_error(ours.output, output[-1])
    for name, p in layer.named_parameters():
        errors[name] = relative_error(ours.param_grads[name.removesuffix("_l0")], p.grad)

    # The cell unrolled by hand: dLoss/dh_t (and dLoss/dc_t) at every step, and dLoss/dx_t.
    step = make_cell(bias).double()
    step.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    xs = torch.tensor(x, requires_grad=True)
    h = torch.tensor(h0, requires_grad=True)
    c = torch.tensor(c0, requires_grad=True)
    hs, cs = [h], [c]
    for t in range(T):
        if lstm:
            h, c = step(xs[t], (h, c))
            c.retain_grad()
            cs.append(c)
        else:
            h = step(xs[t], h)
        h.retain_grad()
        hs.append(h)
    (h * torch.tensor(upstream)).sum().backward()
    errors["dL/dh_t"] = max(relative_error(ours.grads[t], hs[t].grad) for t in range(T + 1))
    errors["dL/dx_t"] = relative_error(ours.input_grads, xs.grad)
    torch_log10 = np.array([np.log10(np.linalg.norm(v.grad.numpy())) for v in hs])
    np.testing.assert_allclose(ours.log10_grad_norms, torch_log10, rtol=0, atol=1e-10)
    if lstm:
        errors["dL/dc_t"] = max(
            relative_error(ours.cell_grads[t], cs[t].grad) for t in range(T + 1)
        )
    worst = max(errors, key=errors.get)
    print(f"{cell} bias={bias}: max relative error {errors[worst]:.1e} ({worst})")
    assert errors[worst] < RTOL, errors
