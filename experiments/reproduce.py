"""The main job: attacks x defenses grid with tables and plots.

  python -m experiments.reproduce            # digits, runs/reproduce_digits
  python -m experiments.reproduce --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb --only attack=badnets+blend,defense=nad+nba

Resumable: run the same command again after an interruption.
"""

from absl import flags

from experiments import cli

main = cli.grid_main('reproduce.run_grid',
                     'attack=badnets+blend,defense=nba,seed=0')
flags.adopt_module_key_flags(cli)  # --help lists --config, --only.

if __name__ == '__main__':
  cli.run(main)
