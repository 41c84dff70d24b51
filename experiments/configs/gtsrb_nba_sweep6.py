"""NBA's default, round six, on GTSRB's validation split.

The candidates and the rule are configs/digits_nba_sweep6.py's (fixed
before either ran); models, FT, NAD and the default are round one's
(configs/gtsrb_nba_sweep.py), reused in the same workdir.

  python -m experiments.ablate --config experiments/configs/gtsrb_nba_sweep6.py \\
      --workdir runs/gtsrb_val
"""

from experiments.configs import digits_nba_sweep6
from experiments.configs import gtsrb_nba_sweep2


def get_config():
  """gtsrb_nba_sweep.py's models and baselines, round six's candidates."""
  return gtsrb_nba_sweep2.round_config(digits_nba_sweep6.CANDIDATES,
                                       'nba_sweep6')
