"""Optax optimizers, schedules, clipping, weight decay and gradient accumulation from `config.optimizer`.

L1/L2 *penalties* are loss terms (see `penalty`), so they show up in the gradients exactly as
their formulas say; decoupled weight decay is an optimizer transformation (AdamW-style).
Weight decay and penalties apply to kernels only (leaves with ndim >= 2), not to biases or norms.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from model_lib.registry import Registry

SCHEDULES = Registry("schedule")
OPTIMIZERS = Registry("optimizer")


def kernel_mask(params: Any) -> Any:
  """True for weight matrices/kernels (ndim >= 2), False for biases and normalization parameters."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def penalty(params: Any, l1: float = 0.0, l2: float = 0.0) -> jax.Array:
  """l1 * sum|w| + l2 * sum w² over kernels (Keras' `kernel_regularizer` convention)."""
  total = jnp.zeros((), jnp.float32)
  if not (l1 or l2):
    return total
  for p, is_kernel in zip(jax.tree.leaves(params), jax.tree.leaves(kernel_mask(params))):
    if is_kernel:
      if l1:
        total += l1 * jnp.abs(p).sum()
      if l2:
        total += l2 * jnp.square(p).sum()
  return total


# ----------------------------------------------------------------------------- schedules


@SCHEDULES.register("constant")
def _constant(lr: float, total_steps: int, cfg: ml_collections.ConfigDict) -> optax.Schedule:
  del total_steps, cfg
  return optax.constant_schedule(lr)


@SCHEDULES.register("linear")
def _linear(lr: float, total_steps: int, cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear from lr to lr * end_factor over decay_steps (default: the whole run)."""
  steps = cfg.get("decay_steps", 0) or total_steps
  return optax.linear_schedule(lr, lr * cfg.get("end_factor", 0.0), steps)


@SCHEDULES.register("cosine")
def _cosine(lr: float, total_steps: int, cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """lr * ((1 - a) * 0.5 * (1 + cos(pi * t / T)) + a), a = end_factor."""
  steps = cfg.get("decay_steps", 0) or total_steps
  return optax.cosine_decay_schedule(lr, steps, alpha=cfg.get("end_factor", 0.0))


@SCHEDULES.register("warmup_cosine")
def _warmup_cosine(lr: float, total_steps: int, cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up 0 -> lr over warmup_steps, then cosine to lr * end_factor at decay_steps."""
  steps = cfg.get("decay_steps", 0) or total_steps
  if steps <= cfg.get("warmup_steps", 0):
    raise ValueError(f"optimizer.schedule.warmup_steps={cfg.get('warmup_steps', 0)} must be smaller than the decay "
                     f"length {steps} (optimizer.schedule.decay_steps, or the run's total steps when 0).")
  return optax.warmup_cosine_decay_schedule(0.0, lr, cfg.get("warmup_steps", 0), steps, lr * cfg.get("end_factor", 0.0))


@SCHEDULES.register("step")
def _step(lr: float, total_steps: int, cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """lr * decay_rate ** floor(t / step_size)."""
  del total_steps
  return optax.exponential_decay(lr, cfg.get("step_size", 1000), cfg.get("decay_rate", 0.1), staircase=True)


def build_schedule(opt_cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The learning-rate schedule named by `optimizer.schedule.name`."""
  sched_cfg = opt_cfg.get("schedule", ml_collections.ConfigDict({"name": "constant"}))
  name = sched_cfg.get("name", "constant")
  return SCHEDULES.get(name, key="optimizer.schedule.name")(opt_cfg.learning_rate, total_steps, sched_cfg)


# ----------------------------------------------------------------------------- optimizers


@OPTIMIZERS.register("sgd")
def _sgd(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.sgd(lr)


@OPTIMIZERS.register("momentum")
def _momentum(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.sgd(lr, momentum=cfg.get("momentum", 0.9), nesterov=cfg.get("nesterov", False))


@OPTIMIZERS.register("nesterov")
def _nesterov(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.sgd(lr, momentum=cfg.get("momentum", 0.9), nesterov=True)


@OPTIMIZERS.register("adam")
def _adam(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adam(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))


@OPTIMIZERS.register("adamw")
def _adamw(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  # Weight decay is added by `build_optimizer` for every optimizer, so plain Adam here.
  return optax.adam(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))


@OPTIMIZERS.register("rmsprop")
def _rmsprop(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.rmsprop(lr, decay=cfg.get("decay", 0.9), eps=cfg.get("eps", 1e-8), momentum=cfg.get("momentum", 0.0) or None)


@OPTIMIZERS.register("adagrad")
def _adagrad(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adagrad(lr, eps=cfg.get("eps", 1e-7))


def decoupled_weight_decay(weight_decay: float, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adds `-lr_t * weight_decay * w` to the (already scaled) updates of kernels."""

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params):
    if params is None:
      raise ValueError("decoupled_weight_decay needs params: call tx.update(grads, state, params).")
    lr = schedule(state.count)
    updates = jax.tree.map(lambda u, p, k: u - lr * weight_decay * p if k else u,
                           updates, params, kernel_mask(params))
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init, update)


def scale_by_multipliers(multipliers: Any) -> optax.GradientTransformation:
  """Multiplies each update leaf by a constant (0 freezes the leaf exactly)."""

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: u if m == 1.0 else u * jnp.asarray(m, u.dtype), updates, multipliers), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def build_optimizer(opt_cfg: ml_collections.ConfigDict,
                    total_steps: int, params: Any = None) -> tuple[optax.GradientTransformation, Callable[[Any], Any]]:
  """Returns (optimizer, learning-rate schedule) for `config.optimizer`.

  Chain: [clip by global norm] -> optimizer(lr schedule) with decoupled weight decay
  `w <- w - lr_t * weight_decay * w` on kernels (exactly AdamW for 'adamw') -> [per-group multipliers:
  freezing, lr_multipliers, layer-wise decay (needs `params`)] -> [magnitude pruning]
  -> [MultiSteps accumulation].
  """
  schedule = build_schedule(opt_cfg, total_steps)
  base = OPTIMIZERS.get(opt_cfg.name, key="optimizer.name")
  parts = []
  if opt_cfg.get("grad_clip_norm", 0.0):
    parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip_norm))
  wd = opt_cfg.get("weight_decay", 0.0)
  if opt_cfg.name == "adamw" and wd:
    parts.append(optax.adamw(schedule, b1=opt_cfg.get("b1", 0.9), b2=opt_cfg.get("b2", 0.999),
                             eps=opt_cfg.get("eps", 1e-8), weight_decay=wd, mask=kernel_mask))
  else:
    parts.append(base(schedule, opt_cfg))
    if wd:
      parts.append(decoupled_weight_decay(wd, schedule))
  tx = optax.chain(*parts) if len(parts) > 1 else parts[0]
  if opt_cfg.get("freeze", "") or opt_cfg.get("lr_multipliers", ()) or opt_cfg.get("layer_decay", 0.0):
    if params is None:
      raise ValueError("optimizer.freeze/lr_multipliers/layer_decay need the params: build_optimizer(..., params=).")
    from model_lib.transfer import update_multipliers

    tx = optax.chain(tx, scale_by_multipliers(update_multipliers(
        params, opt_cfg.get("freeze", ""), opt_cfg.get("lr_multipliers", ()), opt_cfg.get("layer_decay", 0.0))))
  prune_cfg = opt_cfg.get("prune", None)
  if prune_cfg is not None and prune_cfg.sparsity > 0:
    from model_lib.compress.prune import prune_by_magnitude  # Local: compress imports optax only.

    end = prune_cfg.end_step or int(0.75 * total_steps)
    tx = optax.chain(tx, prune_by_magnitude(prune_cfg.sparsity, prune_cfg.scope, prune_cfg.schedule,
                                            prune_cfg.begin_step, end, prune_cfg.frequency))
  k = opt_cfg.get("accumulate_steps", 1)
  if k > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=k)
  return tx, schedule
