"""I-BAU: implicit backdoor adversarial unlearning (Zeng et al., ICLR 2022).

The minimax problem  min_theta max_delta H(delta, theta), with H the clean
subset's cross entropy under one universal perturbation delta, solved in
rounds (one round = one epoch here):

1. the perturbation: from zero, one pass of gradient descent (rate
   `pert_lr`) over the clean subset's batches, in order, on
   -CE(f(x + delta), f(x)'s prediction) + `reg` * ||delta||^2 (no
   projection, as the authors' code);
2. unlearning: for every batch an outer step on theta with the implicit
   hypergradient of the outer loss CE(f(x + delta on `portion` of the
   batch), y): with the inner fixed-point map
   Phi(delta, theta) = delta - `inner_lr` * grad_delta L_in(delta, theta),
   L_in = -CE(f(x_0 + delta), y_0) + `reg` ||delta||^2 on the subset's first
   batch, the hypergradient is
       d L_out / d theta + (d Phi / d theta)^T v,
       v = sum_{k < K} (d Phi / d delta)^T^k  d L_out / d delta
   (`K` fixed-point iterations from v = 0; `implicit_vector`). The training
   layer needs a scalar to differentiate: `surrogate` is
   L_out + <stop_gradient(v), Phi(stop_gradient(delta), theta)>, whose
   theta-gradient is exactly that hypergradient.

Both models run in eval mode (batch norm keeps the backdoored model's
statistics), as in the authors' code; the outer optimizer is Adam
(`ibau.outer`, an optimizer section: lr 1e-3, batch 100, 5 rounds).
docs/design.md §10 lists where this differs from the paper's setting.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbajax import losses, training
from nbajax.defenses.base import (DefenseInputs, Plan, check_integer,
                                  check_number)

Loss = Callable[[Any, Any], jax.Array]


def implicit_vector(inner_loss: Loss, outer_loss: Loss, delta: Any,
                    theta: Any, *, inner_lr: float, steps: int) -> Any:
  """v of the implicit hypergradient by `steps` fixed-point iterations.

  Args:
    inner_loss: `(delta, theta) -> scalar` the inner problem minimizes
      over delta.
    outer_loss: `(delta, theta) -> scalar`.
    delta: the inner solution (any pytree).
    theta: the outer variables (any pytree).
    inner_lr: step of the fixed-point map Phi = delta - lr * grad L_in.
    steps: K >= 1.

  Returns:
    v, a pytree like `delta`: v_{k+1} = (dPhi/ddelta)^T v_k + dL_out/ddelta
    from v_0 = 0, gradient-stopped.
  """
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  g_delta = jax.grad(outer_loss)(delta, theta)
  phi = lambda d: _fixed_point_map(inner_loss, d, theta, inner_lr)
  _, phi_vjp = jax.vjp(phi, delta)
  v = jax.tree_util.tree_map(jnp.zeros_like, g_delta)
  for _ in range(steps):
    (back,) = phi_vjp(v)
    v = jax.tree_util.tree_map(jnp.add, back, g_delta)
  return jax.lax.stop_gradient(v)


def _fixed_point_map(inner_loss: Loss, delta: Any, theta: Any,
                     lr: float) -> Any:
  grad = jax.grad(inner_loss)(delta, theta)
  return jax.tree_util.tree_map(lambda d, g: d - lr * g, delta, grad)


def surrogate(inner_loss: Loss, outer_loss: Loss, delta: Any, theta: Any, *,
              inner_lr: float, steps: int) -> jax.Array:
  """A scalar whose gradient in `theta` is the implicit hypergradient of
  `outer_loss(delta*(theta), theta)` at the inner solution `delta`.

  Its value is `outer_loss(delta, theta)` plus a term that is constant in
  value but not in gradient; report the outer loss, not this.
  """
  delta = jax.lax.stop_gradient(delta)
  v = implicit_vector(inner_loss, outer_loss, delta, theta,
                      inner_lr=inner_lr, steps=steps)
  mapped = _fixed_point_map(inner_loss, delta, theta, inner_lr)
  coupling = sum(jnp.vdot(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(mapped)))
  return outer_loss(delta, theta) + coupling


def hypergradient(inner_loss: Loss, outer_loss: Loss, delta: Any,
                  theta: Any, *, inner_lr: float, steps: int) -> Any:
  """The implicit hypergradient in `theta` (a pytree like theta)."""
  return jax.grad(lambda th: surrogate(inner_loss, outer_loss, delta, th,
                                       inner_lr=inner_lr, steps=steps))(theta)


def unlearned_rows(key: jax.Array, batch: int, portion: float) -> jax.Array:
  """float32 [batch] with 1 on the rows that get the perturbation: a random
  max(1, floor(portion * batch)) of them (the authors' 1 % is one image of
  their batch of 100)."""
  count = max(1, int(np.floor(portion * batch + 1e-9)))
  rows = jax.random.choice(key, batch, (count,), replace=False)
  return jnp.zeros(batch, jnp.float32).at[rows].set(1.0)


# Optimizer sections of its own, checked like `config.defense` before any
# work (paths inside the defense section).
OPTIMIZER_SECTIONS = ('ibau.outer',)


def check(cfg: ml_collections.ConfigDict) -> None:
  """The `ibau` fields (the outer optimizer section is checked as one).

  Raises:
    ValueError: naming the field out of range.
  """
  c = cfg.ibau
  check_integer(c, 'ibau', 'K', low=1)
  for name in ('inner_lr', 'pert_lr'):
    check_number(c, 'ibau', name, low=0.0, low_open=True)
  check_number(c, 'ibau', 'reg', low=0.0)
  check_number(c, 'ibau', 'portion', low=0.0, low_open=True, high=1.0)


def _model_fns(model, cfg):
  """The perturbation pass and the loss, closed over the model."""
  reg = float(cfg.reg)

  def logits_of(params, batch_stats, x):
    return model.apply({'params': params, 'batch_stats': batch_stats}, x,
                       train=False)[0]

  def inner_loss(delta, params, batch_stats, x, y):
    ce = losses.cross_entropy(logits_of(params, batch_stats, x + delta), y)
    return -ce + reg * jnp.sum(delta ** 2)

  @jax.jit
  def pert_step(variables, delta, x):
    x = training.to_float(x)
    predicted = jnp.argmax(logits_of(variables['params'],
                                     variables['batch_stats'], x), -1)
    grad = jax.grad(inner_loss)(delta, variables['params'],
                                variables['batch_stats'], x, predicted)
    return delta - float(cfg.pert_lr) * grad

  return inner_loss, logits_of, pert_step


def plan(inputs: DefenseInputs, cfg: ml_collections.ConfigDict) -> Plan:
  """I-BAU with the fields of `cfg.ibau` (see module docstring).

  Returns:
    The plan: the surrogate loss from the backdoored variables, the
    perturbation recomputed every round, trained with `cfg.ibau.outer`.
  """
  c = cfg.ibau
  check(cfg)
  section = c.outer
  batch = int(section.batch_size)
  x_all, y_all = inputs.x_clean, np.asarray(inputs.y_clean, np.int32)
  x_first = training.to_float(jnp.asarray(x_all[:batch]))
  y_first = jnp.asarray(y_all[:batch])
  inner_loss, logits_of, pert_step = _model_fns(inputs.model, c)
  inner_lr, steps = float(c.inner_lr), int(c.K)
  portion = float(c.portion)

  def perturbation(variables: dict[str, Any], epoch: int) -> dict[str, Any]:
    del epoch  # Each round starts from zero, on the current model.
    delta = jnp.zeros((1, *x_all.shape[1:]), jnp.float32)
    for start in range(0, len(x_all), batch):
      delta = pert_step(variables, delta, x_all[start:start + batch])
    return {'delta': delta, 'x_first': x_first, 'y_first': y_first}

  def loss_fn(params, batch_stats, x, y, key, aux):
    rows = unlearned_rows(key, x.shape[0], portion)[:, None, None, None]

    def outer(delta, p):
      return losses.cross_entropy(
          logits_of(p, batch_stats, x + rows * delta), y)

    def inner(delta, p):
      return inner_loss(delta, p, batch_stats, aux['x_first'],
                        aux['y_first'])

    value = surrogate(inner, outer, aux['delta'], params, inner_lr=inner_lr,
                      steps=steps)
    logits = logits_of(params, batch_stats, x + rows * aux['delta'])
    loss = losses.cross_entropy(logits, y)
    # The round's perturbation size, logged per epoch beside the loss.
    terms = {'delta_l2': jnp.sqrt(jnp.sum(aux['delta'] ** 2))}
    return value, (batch_stats, training.classification_sums(logits, y, loss,
                                                             terms))

  return Plan(loss_fn=loss_fn, start=inputs.variables, section=section,
              epoch_aux=perturbation)
