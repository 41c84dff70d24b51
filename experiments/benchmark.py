"""Training-step throughput and full defense runs, on synthetic data.

  python -m experiments.benchmark                       # WRN-16-1, batch 64
  python -m experiments.benchmark --models=wrn-16-1,preact-resnet18 \
      --batches=64,128,512 --full_runs --out=bench.json
  python -m experiments.benchmark --seeds=1,4      # 4 runs in one program
  python -m experiments.benchmark --batches=512 --compute_dtype=bfloat16

After a compiling epoch, times the library's own epoch loop for the plain
training step, the NAD step and the NBA step (its K generator steps
included) and prints images/s with the compile time apart; `--full_runs`
adds the wall time of a whole NAD and NBA defense (teacher, then defense)
on `--images` images. `--compute_dtype=bfloat16` runs the convolutions and
matmuls in bf16 with float32 parameters (for GPU/TPU; slow on most CPUs).
NAD/NBA settings are `config.defense`'s (default the GTSRB config's). No
data set is needed. JSON with --out.
"""

import os

from absl import flags, logging

from experiments import cli

# Its defense section (NAD, NBA, teacher, epochs) is what gets timed.
_CONFIG = cli.define_config_flag('experiments/configs/gtsrb.py')
_MODELS = flags.DEFINE_list('models', ['wrn-16-1'], 'Models to time.')
_BATCHES = flags.DEFINE_list('batches', ['64'], 'Global batch sizes.')
_KINDS = flags.DEFINE_list('kinds', ['train', 'nad', 'nba'],
                           'Steps to time: train, nad, nba.')
_SEEDS = flags.DEFINE_list('seeds', ['1'],
                           'Runs trained at once (vmap over a seed axis).')
_STEPS = flags.DEFINE_integer('steps', 5, 'Optimizer steps per epoch.')
_EPOCHS = flags.DEFINE_integer('epochs', 1, 'Timed epochs after compiling.')
_FULL = flags.DEFINE_bool('full_runs', False,
                          'Also time whole NAD and NBA defenses.')
_IMAGES = flags.DEFINE_integer('images', 2500,
                               'Clean-subset size of the full runs.')
_DTYPE = flags.DEFINE_string(
    'compute_dtype', 'float32',
    'Model compute dtype: float32 or bfloat16 (parameters stay float32).')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON here '
                           '(a new file unless --overwrite).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace an existing --out file.')


def _check():
  from nbajax import bench, models
  from nbajax.errors import UserError
  # Checked before minutes of timing, and never replaced unasked.
  if _OUT.value and os.path.lexists(_OUT.value) and not _OVERWRITE.value:
    raise UserError(f'--out: {_OUT.value} exists; pass --overwrite to '
                    'replace it')
  for name in _MODELS.value:
    if name not in models.MODEL_NAMES:
      raise UserError(f'--models: unknown model {name!r}; known: '
                      f'{list(models.MODEL_NAMES)}')
  for kind in _KINDS.value:
    if kind not in bench.KINDS:
      raise UserError(f'--kinds: unknown kind {kind!r}; known: '
                      f'{list(bench.KINDS)}')
  if _DTYPE.value not in models.COMPUTE_DTYPES:
    raise UserError(f'--compute_dtype must be one of '
                    f'{list(models.COMPUTE_DTYPES)}, got {_DTYPE.value!r}')
  lists = {}
  for name, flag in (('batches', _BATCHES), ('seeds', _SEEDS)):
    try:
      lists[name] = [int(b) for b in flag.value]
    except ValueError:
      raise UserError(f'--{name} must be integers, got {flag.value}'
                      ) from None
  for name, value in (('steps', _STEPS.value), ('epochs', _EPOCHS.value),
                      ('images', _IMAGES.value),
                      *((n, v) for n, vs in lists.items() for v in vs)):
    if value < 1:
      raise UserError(f'--{name} must be >= 1, got {value}')
  return lists['batches'], lists['seeds']


def _run():
  from nbajax import atomic, bench
  batches, seed_counts = _check()
  defense = _CONFIG.value.defense
  out = {'device': bench.device_info(), 'steps': [], 'full_runs': []}
  rows = []
  for model in _MODELS.value:
    for batch in batches:
      for kind in _KINDS.value:
        for seeds in seed_counts:
          t = bench.measure_step(model, kind, batch, defense=defense,
                                 steps=_STEPS.value, epochs=_EPOCHS.value,
                                 seeds=seeds, dtype=_DTYPE.value)
          out['steps'].append(vars(t))
          rows.append(f'| {model} | {kind} | {batch} | {seeds} | '
                      f'{t.images_per_s:,.0f} | {t.compile_s:.1f} | '
                      f'{t.dtype} |')
          logging.info('%s %s batch %d x %d seeds: %.0f images/s (compile '
                       '%.1f s)', model, kind, batch, seeds, t.images_per_s,
                       t.compile_s)
  if _FULL.value:
    for model in _MODELS.value:
      for kind in ('nad', 'nba'):
        run = bench.full_run(model, kind, defense=defense,
                             images=_IMAGES.value, dtype=_DTYPE.value)
        out['full_runs'].append(run)
  out['device']['peak_bytes_in_use'] = bench.device_info()[
      'peak_bytes_in_use']
  d = out['device']
  print(f'\n{d["device_count"]} x {d["device_kind"]} ({d["backend"]}, jax '
        f'{d["jax"]}); peak memory: {d["peak_bytes_in_use"] or "not reported"}'
        '\n\n| model | step | batch | seeds | images/s (all seeds) | '
        'compile s | dtype |\n|---|---|---|---:|---:|---:|---|\n' +
        '\n'.join(rows))
  for run in out['full_runs']:
    print(f'full {run["kind"]} run, {run["model"]}, {run["images"]} images: '
          f'{run["dtype"]}: teacher {run["teacher_epochs"]} epochs '
          f'{run["teacher_s"]:.0f} s '
          f'+ {run["epochs"]} epochs {run["defense_s"]:.0f} s = '
          f'{run["total_s"]:.0f} s')
  if _OUT.value:
    atomic.write_json(_OUT.value, out)
  return out


def main(argv):
  cli.start(argv)
  cli.run_job(_run)


flags.adopt_module_key_flags(cli)  # --help lists --config, --compilation_cache.


if __name__ == '__main__':
  cli.run(main)
