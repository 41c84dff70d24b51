"""The NBA ablation on a grid's backdoored models (config.ablation).

  python -m experiments.ablate --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb
  python -m experiments.ablate --config experiments/configs/gtsrb.py \
      --workdir runs/gtsrb --only attack=blend,variant=full+align_clean_lam1

Uses (or trains) the backdoored models and teachers of the grid in
--workdir; writes ablation.md, ablation.json and ablation.png there.
Resumable: run the same command again after an interruption.
"""

from absl import flags

from experiments import cli

main = cli.grid_main('ablation.run_ablation',
                     'attack=blend,variant=full+eps8,seed=0')
flags.adopt_module_key_flags(cli)  # --help lists --config, --only.

if __name__ == '__main__':
  cli.run(main)
