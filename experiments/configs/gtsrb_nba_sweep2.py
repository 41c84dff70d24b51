"""NBA's default, round two, on GTSRB's validation split.

The candidates and the rule are configs/digits_nba_sweep2.py's (fixed
before either ran). The models, FT, NAD and the default's cells are round
one's (configs/gtsrb_nba_sweep.py, same workdir): reused, not run again.

  python -m experiments.ablate --config experiments/configs/gtsrb_nba_sweep2.py \\
      --workdir runs/gtsrb_val
"""

import ml_collections

from experiments.configs import digits_nba_sweep2
from experiments.configs import gtsrb_nba_sweep


def round_config(candidates: dict, report: str) -> ml_collections.ConfigDict:
  """gtsrb_nba_sweep.py's models with its FT, NAD and default NBA beside
  `candidates`, the report named `report` (also rounds after this one)."""
  c = gtsrb_nba_sweep.get_config()
  variants = {k: gtsrb_nba_sweep.VARIANTS[k] for k in ('ft', 'nad', 'nba')}
  variants.update(candidates)
  c.ablation.variants = ml_collections.ConfigDict(variants)
  c.ablation.run = tuple(variants)
  c.ablation.report = report
  return c


def get_config():
  """gtsrb_nba_sweep.py's models and baselines, round two's candidates."""
  return round_config(digits_nba_sweep2.CANDIDATES, 'nba_sweep2')
