"""Several seeds in one program: the train step vmapped over a seed axis.

For error bars, S runs that differ only in their seed (initial weights,
data order, augmentation, pseudo samples) are one `jax.vmap` of the step
every job uses, over a leading axis of the train state and the keys; the
data and `aux` (a teacher) are shared. Each seed's run is the run
`Trainer.run_epoch` gives for that seed's state and key (same permutation,
same step keys), up to float rounding of the batched kernels
(tests/test_seeds.py). One device: the seeds become a batch dimension of
the program, meant for a device that one run leaves idle (a GPU at batch
64; not measured yet). On XLA:CPU it is measured slower than running the
seeds one after another (batched convolutions; README, Performance).
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nbajax.training.loop import (_permutation, epoch_metrics, full_batches,
                                  gather_batch)
from nbajax.training.state import TrainState
from nbajax.training.steps import AugmentFn, LossFn, train_step


def stack(trees: Sequence[Any]) -> Any:
  """Pytrees of one structure -> one pytree with a leading seed axis."""
  return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any) -> list[Any]:
  """Inverse of `stack`: the S pytrees of a leading seed axis."""
  count = jax.tree_util.tree_leaves(tree)[0].shape[0]
  return [jax.tree_util.tree_map(lambda a, i=i: a[i], tree)
          for i in range(count)]


class SeedTrainer:
  """`Trainer`'s epoch for S seeds at once (the 'step' loop, one device).

  Args:
    loss_fn: see `nbajax.training.steps`.
    batch_size: batch size of every seed's run.
    augment_fn: on-device augmentation `(x, key) -> x`, or None.
  """

  def __init__(self, loss_fn: LossFn, *, batch_size: int,
               augment_fn: AugmentFn | None = None):
    self.batch_size = batch_size
    self._loss_fn = loss_fn
    self._augment_fn = augment_fn
    self._step = jax.jit(jax.vmap(self._one_step,
                                  in_axes=(0, None, None, 0, None, 0, None)))

  def _one_step(self, state, x_all, y_all, perm, index, key, aux):
    x, y = gather_batch(x_all, y_all, perm, index, self.batch_size)
    return train_step(state, x, y, key, aux, loss_fn=self._loss_fn,
                      augment_fn=self._augment_fn)

  def run_epoch(self, states: TrainState, x_all: jax.Array,
                y_all: jax.Array, epoch: int, keys: jax.Array,
                aux: Any = None) -> tuple[TrainState, list[dict[str, float]]]:
    """One epoch of every seed.

    Args:
      states: a TrainState whose leaves carry a leading seed axis [S, ...]
        (`stack` of S states).
      x_all: uint8 [N,H,W,C]; y_all: int32 [N] (shared by the seeds).
      epoch: 0-based epoch index.
      keys: [S] PRNG keys, one run's base key per seed.
      aux: shared pytree passed to every step (a teacher).

    Returns:
      (states, per-seed epoch metrics as `Trainer.run_epoch` gives them).
    """
    n = x_all.shape[0]
    steps = full_batches(n, self.batch_size)
    split = jax.vmap(jax.random.split)(keys)  # [S, 2]: data, step.
    perms = jax.vmap(lambda k: _permutation(k, epoch, n))(split[:, 0])
    totals = None
    for i in range(steps):
      states, sums = self._step(states, x_all, y_all, perms, i, split[:, 1],
                                aux)
      totals = sums if totals is None else jax.tree_util.tree_map(
          jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = len(keys)
    return states, [epoch_metrics({k: np.asarray(v)[s]
                                   for k, v in totals.items()})
                    for s in range(count)]
