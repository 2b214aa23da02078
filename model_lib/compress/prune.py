"""Magnitude pruning with masks that keep pruned weights at exactly zero, as an Optax transformation.

`prune_by_magnitude` is the whole method: at pruning steps (one-shot, or a polynomial schedule
s_t = s_f + (s_0 - s_f) (1 - (t - t_0) / (t_1 - t_0))^3, Zhu & Gupta 2017) it recomputes masks from
the magnitudes of the updated weights, and at every step it rewrites the updates so that the new
parameters are `(w + u) * mask`. Kernels (ndim >= 2) are pruned; biases and norms are not.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


def prunable(params: Any) -> Any:
  """True for leaves that are pruned: kernels and embeddings (ndim >= 2)."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def _keep_largest(scores: jax.Array, num_pruned: jax.Array) -> jax.Array:
  """Mask (same shape) that zeroes exactly `num_pruned` smallest scores (ties broken by position)."""
  flat = scores.reshape(-1)
  rank = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)  # 0 = smallest
  return (rank >= num_pruned).reshape(scores.shape)


def magnitude_masks(params: Any, sparsity: float | jax.Array, scope: str = "global") -> Any:
  """Boolean masks pruning round(sparsity * n) weights of the prunable leaves: globally or per layer."""
  if scope not in ("global", "layer"):
    raise ValueError(f"Unknown pruning scope '{scope}' (config key optimizer.prune.scope); use 'global' or 'layer'.")
  sparsity = jnp.asarray(sparsity, jnp.float32)
  leaves, treedef = jax.tree.flatten(params)
  which = jax.tree.leaves(prunable(params))
  masks = [jnp.ones(p.shape, bool) for p in leaves]
  idx = [i for i, w in enumerate(which) if w]
  if not idx:
    return jax.tree.unflatten(treedef, masks)
  if scope == "layer":
    for i in idx:
      num = jnp.round(sparsity * leaves[i].size).astype(jnp.int32)
      masks[i] = _keep_largest(jnp.abs(leaves[i]), num)
  else:
    scores = jnp.concatenate([jnp.abs(leaves[i]).reshape(-1) for i in idx])
    keep = _keep_largest(scores, jnp.round(sparsity * scores.size).astype(jnp.int32))
    offset = 0
    for i in idx:
      masks[i] = keep[offset:offset + leaves[i].size].reshape(leaves[i].shape)
      offset += leaves[i].size
  return jax.tree.unflatten(treedef, masks)


def polynomial_sparsity(step: jax.Array | int, final: float, begin: int, end: int, initial: float = 0.0,
                        power: float = 3.0) -> jax.Array:
  """Zhu & Gupta's schedule: `initial` before `begin`, rising to `final` at `end` as 1 - (1 - progress)^power."""
  progress = jnp.clip((jnp.asarray(step, jnp.float32) - begin) / max(end - begin, 1), 0.0, 1.0)
  return final + (initial - final) * (1.0 - progress) ** power


class PruneState(NamedTuple):
  count: jax.Array
  masks: Any


def prune_by_magnitude(final_sparsity: float, scope: str = "global", schedule: str = "oneshot", begin_step: int = 0,
                       end_step: int = 0, frequency: int = 100, initial_sparsity: float = 0.0,
                       power: float = 3.0) -> optax.GradientTransformation:
  """Optax transformation (put it last in the chain) that prunes by magnitude and keeps pruned weights zero.

  oneshot: prune to `final_sparsity` at `begin_step`. gradual: re-prune every `frequency` steps from
  `begin_step` to `end_step` following `polynomial_sparsity`; masks then stay fixed.
  """
  if schedule not in ("oneshot", "gradual"):
    raise ValueError(f"Unknown pruning schedule '{schedule}' (optimizer.prune.schedule); use 'oneshot' or 'gradual'.")
  if schedule == "gradual" and end_step <= begin_step:
    raise ValueError(f"optimizer.prune.end_step ({end_step}) must be > begin_step ({begin_step}) for gradual pruning.")

  def target(count: jax.Array) -> jax.Array:
    if schedule == "oneshot":
      return jnp.float32(final_sparsity)
    return polynomial_sparsity(count, final_sparsity, begin_step, end_step, initial_sparsity, power)

  def is_pruning_step(count: jax.Array) -> jax.Array:
    if schedule == "oneshot":
      return count == begin_step
    return (count >= begin_step) & (count <= end_step) & ((count - begin_step) % frequency == 0)

  def init(params: Any) -> PruneState:
    return PruneState(count=jnp.zeros([], jnp.int32), masks=jax.tree.map(lambda p: jnp.ones(p.shape, bool), params))

  def update(updates: Any, state: PruneState, params: Any = None) -> tuple[Any, PruneState]:
    if params is None:
      raise ValueError("prune_by_magnitude needs params: call tx.update(grads, state, params).")
    proposed = jax.tree.map(lambda p, u: p + u, params, updates)
    masks = jax.lax.cond(is_pruning_step(state.count),
                         lambda: magnitude_masks(proposed, target(state.count), scope),
                         lambda: state.masks)
    new_params = jax.tree.map(lambda w, m: jnp.where(m, w, jnp.zeros_like(w)), proposed, masks)
    new_updates = jax.tree.map(lambda n, p: n - p, new_params, params)
    return new_updates, PruneState(count=optax.safe_increment(state.count), masks=masks)

  return optax.GradientTransformation(init, update)


def sparsity_report(params: Any) -> dict[str, Any]:
  """Exact fraction of zero weights per prunable leaf and overall (counted on the host)."""
  per_layer, zeros, total = {}, 0, 0
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    p = np.asarray(p)
    if p.ndim < 2:
      continue
    z = int((p == 0).sum())
    per_layer[jax.tree_util.keystr(path, simple=True, separator="/")] = {"zeros": z, "size": int(p.size),
                                                                           "sparsity": z / p.size}
    zeros, total = zeros + z, total + p.size
  return {"overall": zeros / max(total, 1), "zeros": zeros, "size": total, "layers": per_layer}
