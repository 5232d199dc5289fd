"""simulate() and sweep(): networks built from the registries, single and batched."""

from __future__ import annotations

import numpy as np
import pytest

from vangrad import INITIALIZERS, backprop, simulate, sweep

# Every result here holds on both engines (VANGRAD_ENGINE=reference and fast).
pytestmark = pytest.mark.usefixtures("engine")


def test_simulate_shapes() -> None:
    one = simulate(depth=3, width=4, activation="tanh", init="xavier_normal", batch_size=8)
    assert one.log10_grad_norms.shape == (4,)
    assert one.log10_weight_grad_norms.shape == (3,)
    many = simulate(
        depth=3, width=4, activation="tanh", init="xavier_normal", batch_size=8, trials=5
    )
    assert many.log10_grad_norms.shape == (5, 4)
    assert many.grad_norms.shape == (5, 4)
    assert many.weight_grad_norms.shape == (5, 3)
    assert many.activation_std.shape == (5, 3)


@pytest.mark.parametrize("trials", [1, 3])
@pytest.mark.parametrize("init", ["normal", "orthogonal", "he_uniform"])
def test_simulate_is_backprop_on_the_documented_draws(init: str, trials: int) -> None:
    depth, width, batch = 4, 5, 6
    flow = simulate(
        depth=depth,
        width=width,
        activation="elu",
        init=init,
        weight_scale=0.8,
        batch_size=batch,
        trials=trials,
        seed=3,
        batchnorm=True,
        residual=True,
        keep_grads=True,
    )
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, width))
    drawn = INITIALIZERS[init].sample(rng, width, width, weight_scale=0.8, trials=depth * trials)
    shape = (depth, width, width) if trials == 1 else (depth, trials, width, width)
    again = backprop(
        x, list(drawn.reshape(shape)), "elu", batchnorm=True, residual=True, keep_grads=True
    )
    np.testing.assert_array_equal(flow.log10_grad_norms, again.log10_grad_norms)
    assert flow.grads is not None


def test_simulate_is_reproducible_from_its_seed() -> None:
    kwargs = {"depth": 5, "width": 4, "activation": "relu", "init": "he_normal", "batch_size": 3}
    a = simulate(**kwargs, seed=1).log10_grad_norms
    np.testing.assert_array_equal(a, simulate(**kwargs, seed=1).log10_grad_norms)
    assert not np.array_equal(a, simulate(**kwargs, seed=2).log10_grad_norms)
    from_generator = simulate(**kwargs, seed=np.random.default_rng(1)).log10_grad_norms
    np.testing.assert_array_equal(a, from_generator)


def test_weight_scale_is_a_gain_for_other_initialisers() -> None:
    # With linear layers the gradient at layer l is scaled by gain ** (L - l) exactly.
    kwargs = {"depth": 6, "width": 5, "activation": "linear", "init": "xavier_normal"}
    base = simulate(**kwargs, batch_size=4).log10_grad_norms
    doubled = simulate(**kwargs, batch_size=4, weight_scale=2.0).log10_grad_norms
    np.testing.assert_allclose(doubled - base, np.arange(6, -1, -1) * np.log10(2), atol=1e-12)


def test_float32_simulation() -> None:
    flow = simulate(
        depth=4,
        width=8,
        activation="tanh",
        init="orthogonal",
        batch_size=4,
        trials=2,
        dtype="float32",
        keep_grads=True,
    )
    assert flow.grads is not None
    assert flow.grads[0].dtype == np.float32


def test_seed004_experiment() -> None:
    # depth 20, one unit per layer, batch 1, tanh, N(0, scale^2) weights: the larger the scale,
    # the less the gradient vanishes (medians over 2000 networks).
    medians = [
        np.median(
            simulate(
                depth=20,
                width=1,
                activation="tanh",
                init="normal",
                weight_scale=scale,
                batch_size=1,
                trials=2000,
            ).log10_grad_norms[:, 0]
        )
        for scale in (0.5, 1.0, 1.5)
    ]
    assert medians[0] < medians[1] < medians[2] < 0
    assert medians[0] < -6


def test_sweep_labels_shapes_and_statistics() -> None:
    grid = sweep(
        [2, 5, 9],
        width=6,
        batch_size=4,
        activations=["tanh", "relu"],
        inits=["normal", "orthogonal"],
        weight_scales=[0.5, 1.0, 2.0, 4.0],
        trials=7,
    )
    assert grid.activations == ("tanh", "relu")
    assert grid.inits == ("normal", "orthogonal")
    assert grid.weight_scales.tolist() == [0.5, 1.0, 2.0, 4.0]
    assert grid.depths.tolist() == [2, 5, 9]
    assert grid.dims == ("activation", "init", "batchnorm", "residual", "weight_scale", "depth")
    assert grid.batchnorm == (False,)
    assert grid.residual == (False,)
    assert grid.log10_input_grad.shape == (2, 2, 1, 1, 4, 3, 7)
    for stat in (grid.median, grid.q25, grid.q75, grid.overflow_fraction):
        assert stat.shape == (2, 2, 1, 1, 4, 3)
    assert np.all(grid.q25 <= grid.median)
    assert np.all(grid.median <= grid.q75)
    assert np.all(grid.overflow_fraction == 0)
    # ReLU is positively homogeneous and the scales share their base networks, so doubling the
    # scale multiplies every depth-d input gradient by exactly 2 ** d.
    shift = np.diff(grid.log10_input_grad[1, :, 0, 0], axis=1)  # (init, scale step, depth, trial)
    expected = grid.depths[:, None] * np.log10(2)
    np.testing.assert_allclose(shift, np.broadcast_to(expected, shift.shape), atol=1e-9)


def test_sweep_matches_backprop_on_each_network() -> None:
    depths, width, batch, trials, scales = [3, 6], 5, 4, 3, [0.7, 1.3]
    grid = sweep(
        depths,
        width=width,
        batch_size=batch,
        activations=["sigmoid", "gelu"],
        inits=["lecun_normal"],
        weight_scales=scales,
        trials=trials,
        batchnorm=True,
        seed=9,
    )
    rng = np.random.default_rng(9)
    x = rng.standard_normal((trials, batch, width))
    base = (
        INITIALIZERS["lecun_normal"]
        .sample(rng, width, width, trials=max(depths) * trials)
        .reshape(max(depths), trials, width, width)
    )
    for a, activation in enumerate(["sigmoid", "gelu"]):
        for s, scale in enumerate(scales):
            for k, depth in enumerate(depths):
                for t in range(trials):
                    weights = [scale * base[layer, t] for layer in range(depth)]
                    expected = backprop(x[t], weights, activation, batchnorm=True)
                    assert grid.log10_input_grad[a, 0, 0, 0, s, k, t] == pytest.approx(
                        expected.log10_grad_norms[0], rel=1e-10
                    )


def test_sweep_records_overflow() -> None:
    grid = sweep(
        [400], width=3, batch_size=2, activations=["linear"], inits=["normal"],
        weight_scales=[1.0, 100.0], trials=4,
    )  # fmt: skip
    assert grid.overflow_fraction[0, 0, 0, 0].tolist() == [[0.0], [1.0]]


def test_sweep_needs_weight_scales_for_normal() -> None:
    with pytest.raises(ValueError, match=r"weight_scales is required for init 'normal'"):
        sweep([3], width=4, batch_size=2, inits=["normal"])
    default = sweep([3], width=4, batch_size=2, inits=["he_normal"], trials=2)
    assert default.weight_scales.tolist() == [1.0]


def test_sweep_quartiles_are_the_quantiles_of_the_trials() -> None:
    grid = sweep([3, 6], width=8, batch_size=4, activations=["tanh"], trials=9)
    for level, field in ((0.25, grid.q25), (0.5, grid.median), (0.75, grid.q75)):
        expected = np.quantile(grid.log10_input_grad, level, axis=-1, method="inverted_cdf")
        np.testing.assert_array_equal(field, expected)
    assert np.all(grid.q25 <= grid.median)
    assert np.all(grid.median <= grid.q75)


def test_sweep_of_dead_relu_stacks_reports_minus_infinity_not_nan() -> None:
    grid = sweep([60], width=2, batch_size=1, activations=["relu"], inits=["he_normal"], trials=16)
    assert np.isneginf(grid.log10_input_grad).any()
    assert not np.isnan(grid.median).any()
    assert not np.isnan(grid.q25).any()


def test_sweep_accepts_numpy_arrays() -> None:
    grid = sweep(np.array([2, 3]), width=4, batch_size=2, weight_scales=np.linspace(0.5, 1.5, 3))
    assert grid.depths.tolist() == [2, 3]
    assert grid.weight_scales.tolist() == [0.5, 1.0, 1.5]


def test_sweep_compares_batchnorm_and_residual_on_the_same_networks() -> None:
    depths, width, batch, trials = [4], 5, 6, 3
    grid = sweep(
        depths,
        width=width,
        batch_size=batch,
        activations=["tanh"],
        inits=["xavier_normal"],
        trials=trials,
        batchnorm=[False, True],
        residual=[False, True],
        seed=4,
    )
    assert grid.batchnorm == (False, True)
    assert grid.residual == (False, True)
    assert grid.median.shape == (1, 1, 2, 2, 1, 1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((trials, batch, width))
    base = (
        INITIALIZERS["xavier_normal"]
        .sample(rng, width, width, trials=max(depths) * trials)
        .reshape(max(depths), trials, width, width)
    )
    for b, batchnorm in enumerate((False, True)):
        for r, residual in enumerate((False, True)):
            for t in range(trials):
                weights = [base[layer, t] for layer in range(max(depths))]
                expected = backprop(x[t], weights, "tanh", batchnorm=batchnorm, residual=residual)
                assert grid.log10_input_grad[0, 0, b, r, 0, 0, t] == pytest.approx(
                    expected.log10_grad_norms[0], rel=1e-10
                )


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("yes", TypeError, r"batchnorm must be True or False, got 'yes'"),
        ([False, 1], TypeError, r"batchnorm\[1\] must be"),
        ([True, True], ValueError, r"batchnorm lists a setting twice: \[True, True\]"),
        ([], ValueError, r"batchnorm must not be empty"),
    ],
)
def test_sweep_refuses_bad_switches(value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sweep([3], width=4, batch_size=2, batchnorm=value)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("pre", ValueError, r"residual must be False, True or 'post', got 'pre'"),
        ([False, "pre"], ValueError, r"residual\[1\] must be False, True or 'post'"),
        (["post", "post"], ValueError, r"residual lists a setting twice: \['post', 'post'\]"),
    ],
)
def test_sweep_refuses_bad_residual_settings(
    value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sweep([3], width=4, batch_size=2, residual=value)


def test_sweep_compares_the_post_activation_block_on_the_same_networks() -> None:
    grid = sweep([2, 4], width=6, batch_size=3, trials=2, residual=[True, "post"], seed=5)
    assert grid.residual == (True, "post")
    alone = sweep([2, 4], width=6, batch_size=3, trials=2, residual="post", seed=5)
    assert alone.residual == ("post",)
    np.testing.assert_array_equal(grid.log10_input_grad[:, :, :, 1:], alone.log10_input_grad)


def test_a_comparison_names_every_residual_setting_of_the_sweep() -> None:
    import matplotlib.pyplot as plt

    from vangrad.plotting import plot_comparison, plot_sweep

    settings = {"batchnorm": [False, True], "residual": [False, True, "post"]}
    grid = sweep([2, 3], width=4, batch_size=2, trials=1, weight_scales=[0.5, 1.0], **settings)
    ax = plot_comparison(grid, depth=2, weight_scale=1.0)
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    assert labels == [
        "plain",
        "residual",
        "residual (post)",
        "batch norm",
        "batch norm\n+ residual",
        "batch norm\n+ residual (post)",
    ]
    ax = plot_sweep(grid, batchnorm=True, residual="post")
    assert ax.get_title().startswith("tanh, xavier_normal, batch norm, residual (post):")
    plt.close("all")
