"""Train a backdoored model: `python -m experiments.attack --config CFG
--workdir DIR --config.attack.name=blend`.

Trains the clean model first when the attack needs one (trojan, cl), unless
`--config.attack.clean_model_dir` names a finished `experiments.train` run.
"""

from absl import flags

from experiments import cli

_CONFIG, _WORKDIR, _OVERWRITE = cli.define_run_flags('runs/attack')


def main(argv):
  cli.start(argv)
  from nbajax.pipeline import attack
  cli.run_job(attack.run_attack, _CONFIG.value, _WORKDIR.value,
              overwrite=_OVERWRITE.value)


flags.adopt_module_key_flags(cli)  # --help lists --config, --workdir.

if __name__ == '__main__':
  cli.run(main)
