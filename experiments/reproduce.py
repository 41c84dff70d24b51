"""The main job: attacks x defenses grid with tables and plots.

  python -m experiments.reproduce            # digits, runs/reproduce_digits
  python -m experiments.reproduce --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb --only attack=badnets+blend,defense=nad+nba

Resumable: run the same command again after an interruption.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/digits.py', 'Experiment config file.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Grid directory (default runs/reproduce_<data>).')
_ONLY = flags.DEFINE_string(
    'only', '', "Filter, e.g. 'attack=badnets+blend,defense=nba,seed=0'.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.setup()
  from nbajax.pipeline import reproduce
  config = _CONFIG.value
  workdir = _WORKDIR.value or f'runs/reproduce_{config.data.name}'
  cli.run_job(reproduce.run_grid, config, workdir, only=_ONLY.value,
              log=logging.info)


if __name__ == '__main__':
  app.run(main)
