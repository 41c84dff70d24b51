"""XLA:CPU settings the jobs run with, chosen by measurement.

On jaxlib 0.10, the version the CPU numbers come from, XLA:CPU hands the
large-window convolutions of a training step (the weight gradients of its
3x3 convolutions: a reduction over batch x height x width into a small
kernel) to its YNNPACK library, where they ran 2-5x slower than in XLA's
Eigen convolution, the path every other convolution already takes; a
WRN-16-1 NAD step at batch 64 spent ~60 % of its time there
(docs/design.md §8 has the profile and the side-by-side numbers).
`CPU_FLAGS` keeps convolutions off YNNPACK, nothing else; only the CPU
compiler reads it, so a GPU or TPU run is unchanged.

`tune` must run before JAX creates its CPU backend (the CLIs call it first
thing); afterwards XLA has read its flags and a change would do nothing.
"""

import os
from collections.abc import MutableMapping

# Each entry: one XLA flag, '--name=value'.
CPU_FLAGS = (
    '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',
)

# jaxlib versions (major, minor) whose XLA knows every flag above and on
# which they were measured; elsewhere `tune` adds nothing (XLA aborts the
# process on a flag it does not know, and a later XLA may have mended the
# slow path).
MEASURED_ON = ((0, 10),)


def _name(flag: str) -> str:
  return flag.split('=', 1)[0]


def tune(environ: MutableMapping[str, str] | None = None,
         jaxlib_version: str | None = None) -> tuple[str, ...]:
  """Adds `CPU_FLAGS` to `XLA_FLAGS`, keeping every flag the user set.

  A flag whose name already appears in `XLA_FLAGS` is left as the user set
  it. Nothing is added on a jaxlib outside `MEASURED_ON`.

  Args:
    environ: the environment to change (default `os.environ`).
    jaxlib_version: e.g. '0.10.2' (default: the installed jaxlib's).

  Returns:
    The flags added (empty when none).
  """
  environ = os.environ if environ is None else environ
  if jaxlib_version is None:
    import jaxlib  # pylint: disable=g-import-not-at-top
    jaxlib_version = jaxlib.__version__
  try:
    version = tuple(int(p) for p in jaxlib_version.split('.')[:2])
  except ValueError:
    return ()
  if version not in MEASURED_ON:
    return ()
  current = environ.get('XLA_FLAGS', '')
  present = {_name(f) for f in current.split()}
  added = tuple(f for f in CPU_FLAGS if _name(f) not in present)
  if added:
    environ['XLA_FLAGS'] = ' '.join([*current.split(), *added])
  return added
