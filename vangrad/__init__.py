"""vangrad: measure and teach the vanishing and exploding gradient problem.

The analytic picture lives in [`vangrad.bounds`][vangrad.bounds]; the measured picture (real
forward and backward passes through deep networks) in the engine modules.
"""

from vangrad._validation import LOSSES
from vangrad.activations import ACTIVATIONS, Activation, get_activation
from vangrad.block_theory import BlockPrediction, predict_blocks
from vangrad.blocks import BLOCKS, BlockFlow, backprop_blocks, simulate_blocks
from vangrad.bounds import SIGMOID_DERIVATIVE_MAX, gradient_bound, log10_gradient_bound
from vangrad.clipping import clip_by_norm, clip_by_value
from vangrad.engine import backprop
from vangrad.flow import GradientFlow
from vangrad.initializers import (
    INITIALIZERS,
    RECURRENT_INITS,
    Initializer,
    get_initializer,
    recurrent_params,
)
from vangrad.recurrent import CELLS, RecurrentFlow, backprop_through_time
from vangrad.simulation import simulate
from vangrad.sweep import Sweep, sweep
from vangrad.theory import (
    PhaseDiagram,
    chi,
    chi_1,
    critical_line,
    critical_sigma_w2,
    depth_scale,
    fixed_point,
    gaussian_expectation,
    init_sigma_w2,
    jacobian_singular_values,
    phase_diagram,
    predicted_jacobian_variance,
    predicted_log10_grad_norms,
    simulate_mean_field,
    variance_map,
    variance_sequence,
)

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "CELLS",
    "INITIALIZERS",
    "LOSSES",
    "RECURRENT_INITS",
    "SIGMOID_DERIVATIVE_MAX",
    "Activation",
    "BlockFlow",
    "BlockPrediction",
    "GradientFlow",
    "Initializer",
    "PhaseDiagram",
    "RecurrentFlow",
    "Sweep",
    "backprop",
    "backprop_blocks",
    "backprop_through_time",
    "chi",
    "chi_1",
    "clip_by_norm",
    "clip_by_value",
    "critical_line",
    "critical_sigma_w2",
    "depth_scale",
    "fixed_point",
    "gaussian_expectation",
    "get_activation",
    "get_initializer",
    "gradient_bound",
    "init_sigma_w2",
    "jacobian_singular_values",
    "log10_gradient_bound",
    "phase_diagram",
    "predict_blocks",
    "predicted_jacobian_variance",
    "predicted_log10_grad_norms",
    "recurrent_params",
    "simulate",
    "simulate_blocks",
    "simulate_mean_field",
    "sweep",
    "variance_map",
    "variance_sequence",
]
__version__ = "0.1.0"
