"""Defend a backdoored model: `python -m experiments.defend --config CFG
--backdoor_dir ATTACK_WORKDIR --workdir DIR --config.defense.name=nba`.

Restores the backdoored checkpoint and its attack spec, builds the seeded
clean subset, makes (or reuses) the teacher, runs the defense and writes
before/after ACC, ASR, RA and DER.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/digits.py', 'Experiment config file.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/defend', 'Run directory.')
_BACKDOOR = flags.DEFINE_string('backdoor_dir', None,
                                'Workdir of a finished experiments.attack run.')
_TEACHER = flags.DEFINE_string('teacher_dir', None,
                               'Where to make or reuse the teacher.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Start over in a workdir holding a finished run.')
flags.mark_flag_as_required('backdoor_dir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.setup()
  from nbajax.pipeline import defend
  cli.run_job(defend.run_defense, _CONFIG.value, _WORKDIR.value,
              backdoor_dir=_BACKDOOR.value, teacher_dir=_TEACHER.value,
              overwrite=_OVERWRITE.value, log=logging.info)


if __name__ == '__main__':
  app.run(main)
