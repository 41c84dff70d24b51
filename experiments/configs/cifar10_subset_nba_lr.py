"""NBA's learning rate on the CIFAR-10 subset (validation split).

The subset's grid (configs/cifar10_subset.py) trains every defense with
NAD's published recipe: lr 0.1 for 2 epochs, then 0.01 (NBA: x 0.1 again
for its last 4 epochs). In the grid's first cell (BadNets) FT and NAD end
at 86-87 % training accuracy on the defender's clean images at that rate;
NBA, whose loss adds cross entropy on PGD pseudo samples (lambda 4), fell
to 22 % in its first epoch and was at 39 % after 10. GTSRB's defenses
run at a constant 0.01 because 0.1 collapsed there as well
(configs/gtsrb.py). The lr is a data set's
setting, not one of NBA's fields, so this sweep asks, on validation only,
which start NBA gets on this subset:

* `nba`: the grid's setting when the sweep ran (0.1, x 0.1 at epochs 2
  and 16), pinned here so the sweep stays what it was after its winner
  became the grid's NBA change;
* `lr01`: 0.01 from the start, x 0.1 at epoch 16 (GTSRB's NBA schedule);
* `lr003`: 0.03 from the start, x 0.1 at epochs 2 and 16.

FT and NAD run at the grid's (published) rate beside them. The rule, fixed
before the sweep runs (round one's, configs/digits_nba_sweep.py): among
the NBA candidates, those whose mean validation ACC is at most 1 point
below NAD's; of those the lowest mean validation ASR (ties: the higher
ACC); if none is within 1 point, the highest mean DER. The winner becomes
`cifar10_subset.py`'s NBA optimizer change; the test grid's NBA cells are
then run again with it.

  python -m experiments.ablate --config experiments/configs/cifar10_subset_nba_lr.py \\
      --workdir runs/cifar10_subset_val

BadNets and Blend (neither needs a clean model), one backdoored-model
seed. 2-core CPU: ~15 min per backdoored model alone, ~8 min per NBA run,
~3 per FT or NAD run: about an hour and a quarter.
"""

import ml_collections

from experiments.configs import cifar10_subset

VARIANTS = {
    'ft': {'name': 'ft'},
    'nad': {'name': 'nad'},
    'nba': {'name': 'nba'},
    # The defense's lr, for this NBA run only (the teacher keeps its own).
    'lr01': {'name': 'nba', 'lr': 0.01,
             'nba': {'optimizer': {'boundaries': (16,)}}},
    'lr003': {'name': 'nba', 'lr': 0.03},
}


def get_config():
  """cifar10_subset on its validation split, NBA's lr as the ablation."""
  c = cifar10_subset.get_config()
  # NBA's optimizer changes as they were when this sweep ran (before its
  # winner was written into cifar10_subset.py).
  c.defense.nba.optimizer = ml_collections.ConfigDict(
      dict(schedule='step', boundaries=(2, 16), decay=0.1))
  c.data.eval_split = 'val'
  c.ablation.attacks = ('badnets', 'blend')
  c.ablation.seeds = (0,)
  c.ablation.variants = ml_collections.ConfigDict(VARIANTS)
  c.ablation.run = tuple(VARIANTS)
  c.ablation.report = 'nba_lr'
  return c
