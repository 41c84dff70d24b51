"""NBA's default, round three, on GTSRB's validation split.

The candidates and the rule are configs/digits_nba_sweep3.py's (fixed
before either ran). The models, FT, NAD and the default's cells are round
one's (configs/gtsrb_nba_sweep.py): reused in the same workdir, trained
there first otherwise.

  python -m experiments.ablate --config experiments/configs/gtsrb_nba_sweep3.py \\
      --workdir runs/gtsrb_val
"""

import ml_collections

from experiments.configs import digits_nba_sweep3
from experiments.configs import gtsrb_nba_sweep


def get_config():
  """gtsrb_nba_sweep.py's models and baselines, round three's candidates."""
  c = gtsrb_nba_sweep.get_config()
  variants = {k: gtsrb_nba_sweep.VARIANTS[k] for k in ('ft', 'nad', 'nba')}
  variants.update(digits_nba_sweep3.CANDIDATES)
  c.ablation.variants = ml_collections.ConfigDict(variants)
  c.ablation.run = tuple(variants)
  c.ablation.report = 'nba_sweep3'
  return c
