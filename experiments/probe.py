"""Probe NBA's pseudo samples on a backdoored model and its teacher.

  python -m experiments.probe --config experiments/configs/gtsrb.py \
      --backdoor_dir runs/gtsrb/seed0/blend/backdoor --eps_255=0,8,16 \
      --steps=0,3 --workdir runs/gtsrb/seed0/blend/probe

Prints (and with --workdir writes probe.md / probe.json) how often the
backdoored model and the teacher send pseudo samples to the attack's target,
per radius and PGD step count (`nbajax.pipeline.probe`). The generator's
other settings are `config.defense.nba`'s.
"""

from absl import flags

from experiments import cli

_CONFIG, _WORKDIR, _ = cli.define_run_flags(None, overwrite=False)
_BACKDOOR = flags.DEFINE_string('backdoor_dir', None,
                                'Workdir of a finished experiments.attack run.')
_EPS = flags.DEFINE_list('eps_255', ['0', '8', '16'],
                         'L-inf radii in 1/255 units.')
_STEPS = flags.DEFINE_list('steps', ['0', '3'], 'PGD step counts K.')
_IMAGES = flags.DEFINE_integer('images', 256, 'Clean-subset images to use.')
flags.mark_flag_as_required('backdoor_dir')


def _numbers(values, kind, name):
  from nbajax.errors import UserError
  try:
    return [kind(v) for v in values]
  except ValueError:
    raise UserError(f'--{name} must be a comma-separated list of numbers, '
                     f'got {",".join(values)!r}') from None


def main(argv):
  cli.start(argv)
  from nbajax.pipeline import probe

  def job():
    eps = [e / 255 for e in _numbers(_EPS.value, float, 'eps_255')]
    steps = _numbers(_STEPS.value, int, 'steps')
    return probe.probe_pseudo_samples(
        _CONFIG.value, backdoor_dir=_BACKDOOR.value, workdir=_WORKDIR.value,
        eps=eps, steps=steps, images=_IMAGES.value)

  cli.run_job(job)


flags.adopt_module_key_flags(cli)  # --help lists --config, --workdir.

if __name__ == '__main__':
  cli.run(main)
