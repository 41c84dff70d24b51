"""Train a clean model: `python -m experiments.train --config CFG --workdir DIR`.

Thin CLI: parses flags, logs the devices, calls `nbajax.pipeline.train`.
Override any field with `--config.train.epochs=5` and so on.
"""

from absl import flags

from experiments import cli

_CONFIG, _WORKDIR, _OVERWRITE = cli.define_run_flags('runs/train')


def main(argv):
  cli.start(argv)
  from nbajax.pipeline import train  # After flags: keeps --help fast.
  cli.run_job(train.train_clean, _CONFIG.value, _WORKDIR.value,
              overwrite=_OVERWRITE.value)


flags.adopt_module_key_flags(cli)  # --help lists --config, --workdir.

if __name__ == '__main__':
  cli.run(main)
