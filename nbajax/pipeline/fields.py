"""Typed readers of config fields for the edge checks (`validate`).

Each reader returns `config.<path>` converted, or raises a `UserError` that
names the field as written on the command line (`config.defense.nba.eps`)
and what it accepts; `prefixed` turns a library's own ValueError into such
an error, so the owning module's rule is stated once, there.
"""

import contextlib
from typing import Any, Iterator, Sequence

import jax
import ml_collections

from nbajax.errors import UserError, check_range

# Marks a field that has no default: missing, it is an error.
REQUIRED = object()


@contextlib.contextmanager
def prefixed(field: str) -> Iterator[None]:
  """Re-raises a library's ValueError/TypeError/KeyError under `field`."""
  try:
    yield
  except (ValueError, TypeError, KeyError) as e:
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    raise UserError(f'{field}: {text}') from e


def get(config, path: str, *, default: Any = REQUIRED) -> Any:
  """`config.<path>`; UserError naming it when missing and required."""
  node = config
  for part in path.split('.'):
    if isinstance(node, (ml_collections.ConfigDict, dict)) and part in node:
      node = node[part]
    elif default is not REQUIRED:
      return default
    else:
      raise UserError(f'config.{path} is missing (see '
                      'experiments/configs/base.py for every field)')
  return node


def is_sequence(value: Any) -> bool:
  return isinstance(value, (list, tuple))


def number(config, path: str, *, low: float, high: float | None = None,
           low_open: bool = False, high_open: bool = False,
           default: Any = REQUIRED) -> float:
  """A finite number in the range (`errors.check_range`); the message shows
  the interval."""
  value = get(config, path, default=default)
  check_range(value, f'config.{path}', low=low, low_open=low_open,
              high=high, high_open=high_open, error=UserError)
  return float(value)


def integer(config, path: str, *, low: int, default: Any = REQUIRED) -> int:
  value = get(config, path, default=default)
  check_range(value, f'config.{path}', low=low, integer=True,
              error=UserError)
  return int(value)


def choice(config, path: str, allowed: Sequence[str], *,
           default: Any = REQUIRED) -> str:
  value = get(config, path, default=default)
  if value not in allowed:
    raise UserError(f'config.{path}={value!r} is not allowed; allowed: '
                    f'{list(allowed)}')
  return value


def names(config, path: str, allowed: Sequence[str], *,
          allow_empty: bool) -> tuple[str, ...]:
  values = get(config, path)
  if not is_sequence(values) or (not values and not allow_empty):
    raise UserError(f'config.{path} must be a non-empty list of names from '
                    f'{list(allowed)}, got {values!r}')
  for v in values:
    if v not in allowed:
      raise UserError(f'config.{path}: {v!r} is not allowed; allowed: '
                      f'{list(allowed)}')
  return tuple(values)


def batch_size(config, path: str) -> int:
  """>= 1 and a multiple of the device count (the batch is split evenly)."""
  batch = integer(config, path, low=1)
  n = jax.device_count()
  if batch % n:
    lower, upper = max(n, batch // n * n), (batch // n + 1) * n
    raise UserError(
        f'config.{path}={batch} is not a multiple of the {n} devices '
        f'(jax.device_count()): each device gets an equal share of the '
        f'batch. Use --config.{path}={lower} or {upper}, or run on fewer '
        'devices (CUDA_VISIBLE_DEVICES, or XLA_FLAGS='
        '--xla_force_host_platform_device_count on CPU)')
  return batch
