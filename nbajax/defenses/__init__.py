"""Backdoor defenses: each maps a backdoored model + clean subset + config
to a defended model (`defend(ctx, cfg) -> (variables, history)`).

* `ft`: fine-tuning (the control; also makes the teacher),
* `fp`: fine-pruning,
* `nad`: Neural Attention Distillation,
* `nba`: Neural Behavior Alignment (our formulation of the paper).
"""

from nbajax.defenses import fp, ft, nad, nba
from nbajax.defenses.base import DefenseContext, finetune, layer_betas

DEFENSES = {'ft': ft.defend, 'fp': fp.defend, 'nad': nad.defend,
            'nba': nba.defend}
DEFENSE_NAMES = tuple(DEFENSES)
NEEDS_TEACHER = ('nad', 'nba')


def get_defense(name: str):
  """The `defend(ctx, cfg)` function of `name`.

  Raises:
    ValueError: for an unknown name (lists the known ones).
  """
  if name not in DEFENSES:
    raise ValueError(f'unknown defense {name!r}; known: {DEFENSE_NAMES}')
  return DEFENSES[name]
