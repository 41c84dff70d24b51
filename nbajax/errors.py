"""The one error type for mistakes the user can fix.

The CLIs end a `UserError` with one line on stderr and exit status 2; every
other exception is a bug in nbajax (or in a library under it) and keeps its
traceback. Raise it where the user's input is known to be at fault: a config
field, a flag, a file given on the command line, a workdir. Its message
names what was wrong and, where there is one, the fix.

`UserError` is a `ValueError`, so code that imports nbajax and catches
`ValueError` around a bad argument keeps working.

`check_range` is the one rule for a numeric setting's range, so every
layer words a bad number the same way ('config.train.lr must be a number
> 0, got -1'); the config checks pass `error=UserError`.

Imports nothing of the project: every layer may raise it.
"""

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any


class UserError(ValueError):
  """Bad input: a config field, flag, data file, results file or workdir."""


def closest(name: str, options: Iterable[str]) -> str:
  """' (did you mean X?)' for the option nearest to `name`, else ''.

  Args:
    name: what the user wrote, e.g. 'defense.nba.epz'.
    options: the valid spellings.

  Returns:
    The suggestion, with a leading space, ready to append to a message.
  """
  match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
  return f' (did you mean {match[0]!r}?)' if match else ''


def check_range(value: Any, where: str, *, low: float,
                low_open: bool = False, high: float | None = None,
                high_open: bool = False, integer: bool = False,
                error: type[ValueError] = ValueError) -> None:
  """Refuses `value` unless it is a finite real (an int when `integer`;
  never a bool) in the range.

  Args:
    value: the setting's value.
    where: its name in the message ('anp.eps', 'config.train.lr').
    low, low_open: lower bound, excluded when `low_open`.
    high, high_open: upper bound (None: none), excluded when `high_open`.
    integer: the value must be an int (Python or NumPy).
    error: the type raised (`UserError` at the config edge).

  Raises:
    `error`: '{where} must be a number in [low, high], got {value!r}' (or
      '>= low', '> low', '(low, high)', ..., 'an int' for `integer`).
  """
  kind = numbers.Integral if integer else numbers.Real
  ok = (isinstance(value, kind) and not isinstance(value, bool)
        and math.isfinite(value))
  ok = ok and (value > low if low_open else value >= low)
  ok = ok and (high is None or (value < high if high_open else value <= high))
  if not ok:
    if high is None:
      bound = f'{">" if low_open else ">="} {_fmt(low)}'
    else:
      bound = (f'in {"(" if low_open else "["}{_fmt(low)}, {_fmt(high)}'
               f'{")" if high_open else "]"}')
    what = 'an int' if integer else 'a number'
    raise error(f'{where} must be {what} {bound}, got {value!r}')


def _fmt(bound: float) -> str:
  return f'{bound:g}' if isinstance(bound, float) else str(bound)
