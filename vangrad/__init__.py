"""vangrad: measure and teach the vanishing and exploding gradient problem.

The analytic picture lives in [`vangrad.bounds`][vangrad.bounds]; the measured picture (real
forward and backward passes through deep networks) in the engine modules.
"""

from vangrad.bounds import SIGMOID_DERIVATIVE_MAX, gradient_bound, log10_gradient_bound

__all__ = ["SIGMOID_DERIVATIVE_MAX", "gradient_bound", "log10_gradient_bound"]
__version__ = "0.1.0"
