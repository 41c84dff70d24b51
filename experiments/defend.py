"""Defend a backdoored model: `python -m experiments.defend --config CFG
--backdoor_dir ATTACK_WORKDIR --workdir DIR --config.defense.name=nba`.

Restores the backdoored checkpoint and its attack spec, builds the seeded
clean subset, makes (or reuses) the teacher, runs the defense and writes
before/after ACC, ASR, RA and DER.
"""

from absl import flags

from experiments import cli

_CONFIG, _WORKDIR, _OVERWRITE = cli.define_run_flags('runs/defend')
_BACKDOOR = flags.DEFINE_string('backdoor_dir', None,
                                'Workdir of a finished experiments.attack run.')
_TEACHER = flags.DEFINE_string('teacher_dir', None,
                               'Where to make or reuse the teacher.')
flags.mark_flag_as_required('backdoor_dir')


def main(argv):
  cli.start(argv)
  from nbajax.pipeline import defend
  cli.run_job(defend.run_defense, _CONFIG.value, _WORKDIR.value,
              backdoor_dir=_BACKDOOR.value, teacher_dir=_TEACHER.value,
              overwrite=_OVERWRITE.value)


flags.adopt_module_key_flags(cli)  # --help lists --config, --workdir.

if __name__ == '__main__':
  cli.run(main)
