"""The checkpoint errors and how a library error is quoted in them."""

_MAX_CAUSE = 300  # Characters of a library error kept in our messages.


class CheckpointError(RuntimeError):
  """A checkpoint is missing, incomplete, corrupted or of another model."""


class CorruptCheckpointError(CheckpointError):
  """A complete step whose files cannot be read (truncated, overwritten)."""


def quote_cause(e: BaseException) -> str:
  """The first line of a library error, without TensorStore's long spec."""
  text = str(e).split('\n', 1)[0].split(' [tensorstore_spec=', 1)[0]
  text = text if len(text) <= _MAX_CAUSE else text[:_MAX_CAUSE] + '...'
  return f'{type(e).__name__}: {text}'
