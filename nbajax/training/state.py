"""Train state: model variables, optimizer state and step in one pytree.

Batch-norm statistics live beside the parameters (flax's imagenet example
pattern), so every train step returns them explicitly and the teacher,
evaluation and the pseudo-sample generator can run the same model with
`train=False`.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """flax's `TrainState` plus the batch-norm statistics; nothing random.

  Attributes (flax's, then ours):
    step: int32 scalar, optimizer steps taken.
    apply_fn: `model.apply` (static).
    params: the model's 'params' collection.
    tx: the optax transformation (static).
    opt_state: the optax state of `tx`.
    batch_stats: the model's 'batch_stats' collection (may be empty); a
      step passes the new statistics to `apply_gradients(grads=...,
      batch_stats=...)`, as in flax's ImageNet example.

  What we add to flax's: `variables` and the checkpoint tree
  (`to_tree`/`from_tree`), the part of the state Orbax saves.
  """

  batch_stats: Any

  @property
  def variables(self) -> dict[str, Any]:
    """The model variables `{'params', 'batch_stats'}` for `apply_fn`."""
    return {'params': self.params, 'batch_stats': self.batch_stats}

  def to_tree(self) -> dict[str, Any]:
    """The saveable part: `{'params','batch_stats','opt_state','step'}`."""
    return {
        'params': self.params,
        'batch_stats': self.batch_stats,
        'opt_state': self.opt_state,
        'step': self.step,
    }

  def from_tree(self, tree: dict[str, Any]) -> 'TrainState':
    """Returns this state with the leaves of a restored `to_tree()` dict.

    Orbax gives containers back as plain dicts/tuples; the leaves are put
    back into this state's own tree structure (optax named tuples included).

    Raises:
      ValueError: when the restored tree has another number of leaves.
    """
    own = self.to_tree()
    treedef = jax.tree_util.tree_structure(own)
    leaves = jax.tree_util.tree_leaves(tree)
    if len(leaves) != treedef.num_leaves:
      raise ValueError(
          f'restored state has {len(leaves)} arrays, this model and optimizer '
          f'need {treedef.num_leaves}: the checkpoint is of another model or '
          'optimizer')
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    return self.replace(**rebuilt)


def create_train_state(
    model: flax.linen.Module,
    tx: optax.GradientTransformation,
    key: jax.Array,
    image_shape: tuple[int, int, int],
    variables: dict[str, Any] | None = None,
) -> TrainState:
  """Initializes (or wraps given) model variables and the optimizer.

  Args:
    model: a linen module following the models contract.
    tx: the optimizer.
    key: PRNG key for `model.init` (unused when `variables` is given).
    image_shape: (H, W, C) of one input image.
    variables: optional existing `{'params', 'batch_stats'}` to start from
      (fine-tuning a backdoored model, for instance).

  Returns:
    A TrainState at step 0.
  """
  if variables is None:
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    # Jitted: eager init of a WRN compiles op by op (~2x slower on CPU).
    variables = jax.jit(functools.partial(model.init, train=False))(key, dummy)
  # Strong dtypes: a weakly typed leaf (a Python-scalar fill) would make the
  # first step's output types differ from its inputs and compile twice.
  variables = jax.tree_util.tree_map(
      lambda a: jnp.asarray(a, dtype=jnp.asarray(a).dtype), variables)
  params = variables['params']
  batch_stats = variables.get('batch_stats', {})
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      apply_fn=model.apply,
      tx=tx,
  )
