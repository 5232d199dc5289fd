"""vangrad: measure and teach the vanishing and exploding gradient problem.

The analytic picture lives in [`vangrad.bounds`][vangrad.bounds]; the measured picture (real
forward and backward passes through deep networks) in the engine modules.
"""

from vangrad.activations import ACTIVATIONS, Activation, get_activation
from vangrad.bounds import SIGMOID_DERIVATIVE_MAX, gradient_bound, log10_gradient_bound
from vangrad.clipping import clip_by_norm
from vangrad.engine import GradientFlow, backprop
from vangrad.initializers import INITIALIZERS, Initializer, get_initializer
from vangrad.simulation import simulate
from vangrad.sweep import Sweep, sweep

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "SIGMOID_DERIVATIVE_MAX",
    "Activation",
    "GradientFlow",
    "Initializer",
    "Sweep",
    "backprop",
    "clip_by_norm",
    "get_activation",
    "get_initializer",
    "gradient_bound",
    "log10_gradient_bound",
    "simulate",
    "sweep",
]
__version__ = "0.1.0"
