"""The NBA ablation on a grid's backdoored models (config.ablation).

  python -m experiments.ablate --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb
  python -m experiments.ablate --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb --only attack=blend,variant=nba+align_clean_lam1

Uses (or trains) the backdoored models and teachers of the grid in
--workdir; writes ablation.md, ablation.json and ablation.png there.
Resumable: run the same command again after an interruption.
"""

from absl import app, flags, logging

from experiments import cli

_CONFIG, _WORKDIR, _ = cli.define_run_flags(None, overwrite=False)
_ONLY = flags.DEFINE_string(
    'only', '', "Filter, e.g. 'attack=blend,variant=nba+eps8,seed=0'.")


def main(argv):
  cli.start(argv)
  from nbajax.pipeline import ablation
  config = _CONFIG.value
  workdir = _WORKDIR.value or f'runs/reproduce_{config.data.name}'
  cli.run_job(ablation.run_ablation, config, workdir, only=_ONLY.value,
              log=logging.info)


if __name__ == '__main__':
  app.run(main)
