"""The main job: attacks x defenses grid with tables and plots.

  python -m experiments.reproduce            # digits, runs/reproduce_digits
  python -m experiments.reproduce --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb --only attack=badnets+blend,defense=nad+nba

Resumable: run the same command again after an interruption.
"""

from absl import app, flags, logging

from experiments import cli

# Default workdir: runs/reproduce_<data name>.
_CONFIG, _WORKDIR, _ = cli.define_run_flags(None, overwrite=False)
_ONLY = flags.DEFINE_string(
    'only', '', "Filter, e.g. 'attack=badnets+blend,defense=nba,seed=0'.")


def main(argv):
  cli.start(argv)
  from nbajax.pipeline import reproduce
  config = _CONFIG.value
  workdir = _WORKDIR.value or f'runs/reproduce_{config.data.name}'
  cli.run_job(reproduce.run_grid, config, workdir, only=_ONLY.value,
              log=logging.info)


if __name__ == '__main__':
  app.run(main)
