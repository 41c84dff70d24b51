"""Data parallelism over all devices on a 1-D `data` mesh.

Parameters and the on-device data set are replicated; each batch is sharded
along its first axis. The step is plain `jax.jit`: XLA partitions it, and
because the loss is written over the global batch, batch-norm statistics,
the universal pseudo-sample perturbation and the loss mean are global
without any explicit collective.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'data'


def make_mesh(devices: Any = None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all devices)."""
  devs = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devs.reshape(-1), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, P(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of `tree` fully on every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError when the batch cannot be split evenly."""
  n = mesh.devices.size
  if batch_size < 1 or batch_size % n:
    raise ValueError(
        f'batch_size {batch_size} must be a positive multiple of the device '
        f'count {n}')
