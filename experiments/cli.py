"""What every CLI does: readable logs, a line about the devices, and errors
that end the run with one message and a non-zero exit instead of a traceback.

Exit codes: 2 for the user's mistakes (a flag, a config field or value, the
config file, data, workdir or checkpoint: `nbajax.errors.UserError` and
`CheckpointError`), 1 for a non-finite loss, 128 + the signal's number after
SIGINT/SIGTERM (the shell's convention: 130, 143). Any other exception is a
bug and keeps its traceback. Set NBAJAX_TRACEBACK=1 to get the traceback of
the known failures as well.
"""

import importlib.util
import logging as std_logging
import os
import re
import sys
from typing import Any, Callable, NoReturn

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from nbajax.errors import UserError, closest


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of Orbax and JAX internals; keeps their warnings."""

  _NOISY = ('orbax', 'jax/_src', 'etils', 'tensorflow_datasets')

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    return not any(part in record.pathname for part in self._NOISY)


DEFAULT_CONFIG = 'experiments/configs/digits.py'

# JAX's persistent compilation cache: a grid compiles each step once per
# shape, not once per cell and run. JAX's own variable wins when set.
DEFAULT_CACHE = os.environ.get('JAX_COMPILATION_CACHE_DIR') or os.path.join(
    os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache'),
    'nbajax', 'jax')
_CACHE = flags.DEFINE_string(
    'compilation_cache', DEFAULT_CACHE,
    'Directory of JAX\'s persistent compilation cache (compiled steps are '
    'reused across runs and cells); empty to turn it off.')
# XLA:CPU's convolutions off its slow library path (nbajax/training/xla_cpu.py).
_TUNE_CPU = flags.DEFINE_bool(
    'tune_cpu', True,
    'Add nbajax\'s measured XLA:CPU flags to XLA_FLAGS (docs/design.md §8); '
    'flags already in XLA_FLAGS win. --notune_cpu runs XLA\'s defaults.')
# Several processes (a TPU pod slice, GPU nodes, CPU processes): each runs
# the same command with its --process_id; process 0 writes every file.
_PROCESSES = flags.DEFINE_integer(
    'num_processes', None,
    'Processes of this run (default: env NBAJAX_NUM_PROCESSES, else 1).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None,
    'This process\'s index, 0 .. num_processes - 1 (default: env '
    'NBAJAX_PROCESS_ID, else 0).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0, reachable by every process (default: env '
    'NBAJAX_COORDINATOR_ADDRESS).')


def _process_setting(flag, env: str, default: Any) -> Any:
  """A process flag's value, else its environment variable's, else
  `default`; a non-integer variable where an integer is needed exits 2."""
  if flag.value is not None:
    return flag.value
  raw = os.environ.get(env)
  if raw is None:
    return default
  if isinstance(default, int):
    try:
      return int(raw)
    except ValueError:
      exit_usage(f'environment variable {env}={raw!r} is not an integer')
  return raw


def define_run_flags(default_workdir: str | None, *,
                     overwrite: bool = True) -> tuple[Any, Any, Any]:
  """The flags every job CLI has: --config, --workdir, --overwrite.

  Args:
    default_workdir: default of --workdir (None: the job picks one).
    overwrite: also define --overwrite.

  Returns:
    (config, workdir, overwrite) flag holders; overwrite is None when not
    defined.
  """
  config = define_config_flag(DEFAULT_CONFIG)
  workdir = flags.DEFINE_string('workdir', default_workdir, 'Run directory.')
  over = (flags.DEFINE_bool('overwrite', False,
                            'Start over in a workdir holding a finished run.')
          if overwrite else None)
  return config, workdir, over


def define_config_flag(default: str) -> Any:
  """--config (a config file, `default` unless given) and its overrides.

  ml_collections applies `--config.a.b=V` while defining the flag and
  answers a mistyped field with a long traceback, so the command line is
  checked first (`override_problem`) and a mistake ends in one line.
  """
  problem = override_problem(sys.argv, default=default)
  if problem:
    exit_usage(problem)
  return config_flags.DEFINE_config_file(
      'config', default, 'Experiment config file.', lock_config=True)


def grid_main(job_name: str, example: str) -> Callable[[list[str]], None]:
  """Flags and `main` of a grid-shaped CLI (reproduce, ablate).

  Defines --config, --workdir (default `runs/reproduce_<data name>`) and
  --only; `main` runs the function `job_name` names in `nbajax.pipeline`,
  imported only then so that `--help` stays fast.

  Args:
    job_name: 'module.function', e.g. 'reproduce.run_grid'.
    example: an example of --only for its help text.

  Returns:
    The `main(argv)` to give `absl.app.run`.
  """
  config, workdir, _ = define_run_flags(None, overwrite=False)
  only = flags.DEFINE_string('only', '', f'Filter, e.g. {example!r}.')

  def main(argv: list[str]) -> None:
    start(argv)
    module_name, fn_name = job_name.split('.')
    module = importlib.import_module(f'nbajax.pipeline.{module_name}')
    cfg = config.value
    run_job(getattr(module, fn_name), cfg,
            workdir.value or f'runs/reproduce_{cfg.data.name}',
            only=only.value)

  return main


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, with bad flags ending in one line and exit 2."""
  app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # Bad value, missing required flag, unknown flag.
    exit_usage(str(e))


def exit_usage(message: str) -> NoReturn:
  """Ends the program: `error: <message>` on stderr, exit status 2."""
  sys.stderr.write(f'error: {message}\n')
  sys.stderr.flush()
  raise SystemExit(2)


def _config_path(argv: list[str], default: str = DEFAULT_CONFIG) -> str:
  """The --config file named in `argv` (`default` when none is)."""
  for i, arg in enumerate(argv):
    match = re.match(r'^--?config(=(.*))?$', arg)
    if match:
      value = match.group(2) if match.group(1) else (
          argv[i + 1] if i + 1 < len(argv) else '')
      return value.split(':', 1)[0]
  return default


def _field_paths(config: ml_collections.ConfigDict, prefix: str = ''
                 ) -> list[str]:
  paths = []
  for key, value in config.items():
    paths.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      paths += _field_paths(value, f'{prefix}{key}.')
  return paths


def override_problem(argv: list[str], *,
                     default: str = DEFAULT_CONFIG) -> str | None:
  """Why the config file or a `--config.<field>` in `argv` cannot be used.

  Args:
    argv: the command line.
    default: the config file when `argv` names none.

  Returns:
    One line naming the missing config file or the first field the config
    does not have (with the closest field that exists), or None.
  """
  path = _config_path(argv, default)
  if not os.path.isfile(path):
    return f'--config {path}: no such config file'
  overrides = [m.group(1) for a in argv
               if (m := re.match(r'^--?(?:no)?config\.([^=]+)', a))]
  if not overrides:
    return None
  spec = importlib.util.spec_from_file_location('_nbajax_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # A broken config file keeps its traceback.
  fields = _field_paths(module.get_config())
  for name in overrides:
    if name not in fields:
      parent = name.rpartition('.')[0]
      where = f'config.{parent}' if parent else 'the config'
      return (f'--config.{name}: {where} has no field '
              f'{name.rpartition(".")[2]!r}{closest(name, fields)}')
  return None


def start(argv: list[str]) -> None:
  """Refuses stray arguments and an unloadable config, then `setup()`."""
  if len(argv) > 1:
    exit_usage(f'unexpected arguments: {argv[1:]} (flags are --name=value)')
  if 'config' in flags.FLAGS and not isinstance(
      flags.FLAGS['config'].value, ml_collections.ConfigDict):
    path = config_flags.get_config_filename(flags.FLAGS['config'])
    exit_usage(f'--config {path}: no such config file'
               if not os.path.isfile(path.split(':', 1)[0])
               else f'--config {path}: the file has no usable get_config()')
  setup()


def setup() -> None:
  """Sets XLA:CPU's flags (--tune_cpu), joins a multi-process run
  (--num_processes), turns on the compilation cache (--compilation_cache),
  logs to stderr at INFO (library chatter filtered; WARNING in processes
  other than 0), names the devices."""
  from nbajax import atomic
  from nbajax.training import distributed, xla_cpu
  # Before anything creates a backend: XLA reads its flags once.
  tuned = xla_cpu.tune() if _TUNE_CPU.value else ()
  # The filter goes on before JAX starts its backends, whose start-up
  # chatter ('Unable to initialize backend tpu') it drops.
  handler = logging.get_absl_handler()
  handler.python_handler.stream = sys.stderr
  handler.addFilter(_QuietLibraries())
  try:
    distributed.initialize(
        num_processes=_process_setting(_PROCESSES, 'NBAJAX_NUM_PROCESSES',
                                       1),
        process_id=_process_setting(_PROCESS_ID, 'NBAJAX_PROCESS_ID', 0),
        coordinator_address=_process_setting(
            _COORDINATOR, 'NBAJAX_COORDINATOR_ADDRESS', ''))
  except ValueError as e:
    exit_usage(f'--num_processes/--process_id/--coordinator_address: {e}')
  atomic.set_process(jax.process_index(), jax.process_count())
  if _CACHE.value:
    jax.config.update('jax_compilation_cache_dir',
                      os.path.expanduser(_CACHE.value))
  logging.set_verbosity(logging.INFO if atomic.is_writer()
                        else logging.WARNING)
  devices = jax.devices()
  logging.info('JAX %s on %s: %d device(s) in %d process(es): %s; '
               'compilation cache: %s; XLA flags added: %s', jax.__version__,
               jax.default_backend(), len(devices), jax.process_count(),
               ', '.join(str(d) for d in devices[:8]),
               _CACHE.value or 'off', ' '.join(tuned) or 'none')


# Failures that are the user's to fix; anything else is a bug and keeps its
# traceback. DatasetNotPreparedError is a UserError, CorruptCheckpointError a
# CheckpointError.
_BAD_INPUT = (UserError,)


def run_job(job: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
  """Runs a pipeline job; known failures exit with one message on stderr.

  Args:
    job: e.g. `nbajax.pipeline.train.train_clean`.
    *args: its positional arguments.
    **kwargs: its keyword arguments.

  Returns:
    What `job` returns.

  Raises:
    SystemExit: with the exit code of the module docstring.
  """
  # Imported here so that `--help` stays fast.
  from nbajax.checkpoint import CheckpointError
  from nbajax.training import TrainingInterrupted
  try:
    return job(*args, **kwargs)
  except TrainingInterrupted as e:
    _fail('interrupted', e, 128 + e.signum)
  except KeyboardInterrupt as e:  # Ctrl-C outside the epoch loop.
    e.args = ('Ctrl-C outside training; finished epochs stay saved',)
    _fail('interrupted', e, 130)
  except FloatingPointError as e:
    _fail('training diverged', e, 1)
  except (CheckpointError,) + _BAD_INPUT as e:
    _fail('error', e, 2)


def _fail(kind: str, error: BaseException, code: int) -> NoReturn:
  if os.environ.get('NBAJAX_TRACEBACK'):
    raise error
  text = (error.args[0] if isinstance(error, KeyError) and error.args
          else str(error))
  sys.stderr.write(f'{kind}: {text}\n')
  sys.stderr.flush()
  raise SystemExit(code)
