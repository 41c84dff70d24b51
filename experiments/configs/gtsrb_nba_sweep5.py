"""NBA's default, round five, on GTSRB's validation split.

The candidates and the rule are configs/digits_nba_sweep5.py's (fixed
before either ran). The models, FT, NAD and the default's cells are round
one's (configs/gtsrb_nba_sweep.py): reused in the same workdir, trained
there first otherwise.

  python -m experiments.ablate --config experiments/configs/gtsrb_nba_sweep5.py \\
      --workdir runs/gtsrb_val
"""

from experiments.configs import digits_nba_sweep5
from experiments.configs import gtsrb_nba_sweep2


def get_config():
  """gtsrb_nba_sweep.py's models and baselines, round five's candidates."""
  return gtsrb_nba_sweep2.round_config(digits_nba_sweep5.CANDIDATES,
                                       'nba_sweep5')
