"""The one error type for mistakes the user can fix.

The CLIs end a `UserError` with one line on stderr and exit status 2; every
other exception is a bug in nbajax (or in a library under it) and keeps its
traceback. Raise it where the user's input is known to be at fault: a config
field, a flag, a file given on the command line, a workdir. Its message
names what was wrong and, where there is one, the fix.

`UserError` is a `ValueError`, so code that imports nbajax and catches
`ValueError` around a bad argument keeps working.

Imports nothing of the project: every layer may raise it.
"""

import difflib
from collections.abc import Iterable


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
