"""Pure distillation losses for backdoor removal (NAD and our NBA).

Every function here is a pure, jit-able function of arrays: data positional,
hyper-parameters keyword-only, `jax.typing.ArrayLike` in, `jax.Array` out.
The package imports only JAX, NumPy and optax, so it can be used from any
JAX code base.

Feature maps are NHWC (`[B, H, W, C]`), as the `nbajax.models` return them.
Wherever a loss compares a student with a teacher, the teacher side is put
under `jax.lax.stop_gradient`: the teacher is a fixed target.

References:
  [AT]  Zagoruyko & Komodakis, "Paying More Attention to Attention",
        ICLR 2017, arXiv 1612.03928.
  [NAD] Li et al., "Neural Attention Distillation: Erasing Backdoor Triggers
        from Deep Neural Networks", ICLR 2021, arXiv 2101.05930.
  [NBA] Ying & Wu, "NBA: defensive distillation for backdoor removal via
        neural behavior alignment", Cybersecurity 2023, arXiv 2406.10846.
        The paper's body is not available; the behavior kinds and the
        student loss below are our formulation (see docs/design.md §7).
  [KD]  Hinton et al., "Distilling the Knowledge in a Neural Network",
        arXiv 1503.02531.
"""

from nbajax.losses._attention import attention_loss, attention_map, nad_loss
from nbajax.losses._behavior import (BEHAVIOR_KINDS, behavior,
                                     behavior_distance, behavior_loss,
                                     check_behavior_weights)
from nbajax.losses._classification import (cross_entropy,
                                           cross_entropy_per_example,
                                           kd_loss)
from nbajax.losses._common import ArrayLike, Features
from nbajax.losses._nba import nba_loss

__all__ = [
    'ArrayLike', 'BEHAVIOR_KINDS', 'Features', 'attention_loss',
    'attention_map', 'behavior', 'behavior_distance', 'behavior_loss',
    'check_behavior_weights', 'cross_entropy', 'cross_entropy_per_example',
    'kd_loss', 'nad_loss', 'nba_loss',
]
