"""Several processes (TPU pod slices, multi-node GPU, or CPU processes):
JAX's multi-process runtime.

`initialize` starts it when more than one process is asked for; then
`jax.devices()` lists every process's devices, the 1-D `data` mesh spans
them all (`sharding.make_mesh`), and the jitted step is one SPMD program:
each process computes its devices' shard of every global batch, and
gradients, batch-norm statistics and metrics are reduced across processes
by XLA. The data set is loaded by every process and placed replicated, as
in one process. On CPU the collectives run over gloo.

Call it before anything touches a device (it fixes the device list).
"""

import jax


def initialize(*, num_processes: int, process_id: int,
               coordinator_address: str) -> bool:
  """Joins a run of `num_processes` processes (no-op for one).

  Args:
    num_processes: processes of the run (1: nothing to do).
    process_id: this process's index, 0 .. num_processes - 1.
    coordinator_address: 'host:port' of process 0's coordinator.

  Returns:
    Whether the multi-process runtime was started.

  Raises:
    ValueError: an inconsistent process count, index or address.
  """
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f'process_id must lie in [0, {num_processes}) and '
                     f'num_processes >= 1, got {process_id} of '
                     f'{num_processes}')
  if num_processes == 1:
    return False
  if not coordinator_address or ':' not in coordinator_address:
    raise ValueError("coordinator_address must be 'host:port' of process 0, "
                     f'got {coordinator_address!r}')
  # CPU devices need a collectives backend across processes; GPU and TPU
  # ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
  return True
