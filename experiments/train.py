"""Train a clean model: `python -m experiments.train --config CFG --workdir DIR`.

Thin CLI: parses flags, logs the devices, calls `nbajax.pipeline.train`.
Override any field with `--config.train.epochs=5` and so on.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/digits.py', 'Experiment config file.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/train', 'Run directory.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Start over in a workdir holding a finished run.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.setup()
  from nbajax.pipeline import train  # After flags: keeps --help fast.
  cli.run_job(train.train_clean, _CONFIG.value, _WORKDIR.value,
              overwrite=_OVERWRITE.value, log=logging.info)


if __name__ == '__main__':
  app.run(main)
