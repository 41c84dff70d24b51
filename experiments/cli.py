"""What every CLI does first: readable logs and a line about the devices."""

import logging as std_logging
import sys

import jax
from absl import logging


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of Orbax and JAX internals; keeps their warnings."""

  _NOISY = ('orbax', 'jax/_src', 'etils', 'tensorflow_datasets')

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    return not any(part in record.pathname for part in self._NOISY)


def setup() -> None:
  """Logs to stderr at INFO (library chatter filtered), names the devices."""
  logging.set_verbosity(logging.INFO)
  handler = logging.get_absl_handler()
  handler.python_handler.stream = sys.stderr
  handler.addFilter(_QuietLibraries())
  devices = jax.devices()
  logging.info('JAX %s on %s: %d device(s): %s', jax.__version__,
               jax.default_backend(), len(devices),
               ', '.join(str(d) for d in devices[:8]))
