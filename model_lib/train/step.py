"""Pure train and eval steps. The loop jits them once (state donated) and never retraces."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from model_lib import optim
from model_lib.train.state import TrainState

Batch = dict[str, jax.Array]


def _variables(state: TrainState, params: Any) -> dict[str, Any]:
  return {"params": params, "batch_stats": state.batch_stats} if state.batch_stats else {"params": params}


def first_nonfinite_leaf(tree: Any) -> jax.Array:
  """Index (in `jax.tree.leaves` order) of the first leaf holding a NaN/Inf, or -1."""
  bad = jnp.stack([~jnp.isfinite(x).all() for x in jax.tree.leaves(tree)])
  return jnp.where(bad.any(), jnp.argmax(bad), -1).astype(jnp.int32)


def measure_at(*periods: int, last: int = 0) -> Callable[[jax.Array], jax.Array]:
  """A `measure` predicate for `make_train_step`: 1-based step numbers that are multiples of any period, or `last`."""
  periods = tuple(p for p in periods if p > 0)

  def measure(step: jax.Array) -> jax.Array:
    hit = step == last
    for period in periods:
      hit = hit | (step % period == 0)
    return hit

  return measure


def make_train_step(task: Any, l1: float = 0.0, l2: float = 0.0, guard_nonfinite: bool = False,
                    axis_name: str | None = None, param_transform: Callable[[Any], Any] | None = None,
                    measure: Callable[[jax.Array], jax.Array] | None = None
                    ) -> Callable[[TrainState, Batch, jax.Array], tuple]:
  """Returns `train_step(state, batch, rng) -> (state, metrics)`; rng is the run's dropout key.

  `measure(step)` (1-based step number -> bool; None: every step) picks the steps that compute `grad_norm` and
  `param_norm` (one pass over gradients and one over parameters, ~8% of a small MLP's step) and check them for
  NaN/Inf; the others report 0 for both and check the loss only. `metrics['measured']` says which.
  A step whose checks fail reports it in `metrics['nonfinite']`, `metrics['nonfinite_leaf']` and
  `metrics['nonfinite_update_leaf']` (the per-leaf search runs only on such steps); the loop applies
  `train.nan_policy` when it reads the metrics, and measures and reads them before every checkpoint.
  With `guard_nonfinite` (what `nan_policy=skip` needs; implies measuring every step) such a step also leaves
  params, optimizer state and BatchNorm statistics unchanged (the step counter still advances); that select
  over the whole state costs a pass over it every step, so the policies that discard the state anyway (raise,
  rollback) go without.
  `axis_name` (pmap): gradients, losses and metrics are averaged over the replicas of that axis, each of
  which sees an equal slice of the batch, and dropout masks differ per replica.
  `param_transform` maps the stored parameters to those the forward pass uses (e.g. int8 fake
  quantization for quantization-aware training); gradients flow through it.
  """
  use = param_transform or (lambda p: p)
  if guard_nonfinite:
    measure = None  # Which updates to drop must be known every step.

  def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    step_rng = jax.random.fold_in(rng, state.step)
    if axis_name is not None:
      step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis_name))

    def loss_fn(params):
      outputs, updates = state.apply_fn(_variables(state, use(params)), batch["x"], train=True,
                                        rngs={"dropout": step_rng}, mutable=["batch_stats"])
      data_loss = task.loss(outputs, batch)
      return data_loss + optim.penalty(params, l1, l2), (data_loss, outputs, updates)

    (total, (data_loss, outputs, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    task_metrics = task.train_metrics(outputs, batch)
    if axis_name is not None:
      grads, total, data_loss, task_metrics = jax.lax.pmean((grads, total, data_loss, task_metrics), axis_name)
    param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    param_updates = jax.tree.map(lambda u: u * state.lr_scale.astype(u.dtype), param_updates)
    new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
                              opt_state=opt_state, batch_stats=updates.get("batch_stats", state.batch_stats))
    norms = lambda: (optax.tree.norm(grads), optax.tree.norm(new_state.params))
    if measure is None:
      measured, (grad_norm, param_norm) = jnp.bool_(True), norms()
    else:  # Same predicate on every device (from the replicated step), so collectives inside the cond are safe.
      measured = measure(state.step + 1)
      grad_norm, param_norm = jax.lax.cond(measured, norms, lambda: (jnp.float32(0.0), jnp.float32(0.0)))
    step_metrics = {"loss": data_loss, "total_loss": total, "grad_norm": grad_norm, **task_metrics,
                    "measured": measured.astype(jnp.float32)}
    # The norms are computed anyway and are non-finite whenever a leaf is, so the per-leaf search (one
    # reduction per leaf) runs only on suspect steps; a huge but finite leaf can overflow a norm, hence the
    # exact re-check rather than trusting the norms.
    suspect = ~(jnp.isfinite(total) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm))
    bad_leaf, bad_update_leaf = jax.lax.cond(
        suspect, lambda: (first_nonfinite_leaf(grads), first_nonfinite_leaf(new_state.params)),
        lambda: (jnp.int32(-1), jnp.int32(-1)))
    ok = jnp.isfinite(total) & (bad_leaf < 0) & (bad_update_leaf < 0)  # A finite gradient times a huge lr can overflow.
    if guard_nonfinite:
      kept = jax.tree.map(lambda new, old: jnp.where(ok, new, old),
                          (new_state.params, new_state.opt_state, new_state.batch_stats),
                          (state.params, state.opt_state, state.batch_stats))
      new_state = new_state.replace(params=kept[0], opt_state=kept[1], batch_stats=kept[2])
      # Of the kept params: reading the old (donated) params here instead would make XLA copy them.
      param_norm = optax.tree.norm(new_state.params)
    step_metrics["nonfinite"] = (~ok).astype(jnp.float32)
    step_metrics["nonfinite_leaf"] = bad_leaf
    step_metrics["nonfinite_update_leaf"] = bad_update_leaf
    step_metrics["param_norm"] = param_norm
    return new_state, step_metrics

  return train_step


def make_eval_step(task: Any, axis_name: str | None = None,
                   param_transform: Callable[[Any], Any] | None = None) -> Callable[[TrainState, Batch], dict[str, Any]]:
  """Returns `eval_step(state, batch) -> {'stats': summable sums, 'scores': per-example scores}`.

  `axis_name` (pmap): the statistics are summed over the replicas of that axis. `param_transform`: as in
  `make_train_step` (a QAT model is evaluated with its quantized weights).
  """
  use = param_transform or (lambda p: p)

  def eval_step(state: TrainState, batch: Batch) -> dict[str, Any]:
    outputs = state.apply_fn(_variables(state, use(state.params)), batch["x"], train=False)
    stats = task.eval_stats(outputs, batch)
    if axis_name is not None:
      stats = jax.lax.psum(stats, axis_name)
    return {"stats": stats, "scores": task.scores(outputs)}

  return eval_step


def add_stats(a: dict[str, jax.Array] | None, b: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Sums two eval-statistics trees (the first may be None)."""
  return b if a is None else jax.tree.map(jnp.add, a, b)
