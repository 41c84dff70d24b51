"""Train a backdoored model: `python -m experiments.attack --config CFG
--workdir DIR --config.attack.name=blend`.

Trains the clean model first when the attack needs one (trojan, cl), unless
`--config.attack.clean_model_dir` names a finished `experiments.train` run.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/digits.py', 'Experiment config file.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/attack', 'Run directory.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Start over in a workdir holding a finished run.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.setup()
  from nbajax.pipeline import attack
  cli.run_job(attack.run_attack, _CONFIG.value, _WORKDIR.value,
              overwrite=_OVERWRITE.value, log=logging.info)


if __name__ == '__main__':
  app.run(main)
