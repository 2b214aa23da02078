"""Pretrain -> fine-tune: initialise from another run's checkpoint by parameter path, freeze or re-weight groups.

`partial_restore` copies every parameter whose path and shape match the source checkpoint and keeps
the fresh initialisation for the rest (new heads, resized layers), reporting both. Freezing and
per-group learning rates are multipliers on the optimizer's updates (see `update_multipliers`), so a
frozen parameter stays bitwise unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from model_lib.models.transformer import SCANNED_BLOCKS

log = logging.getLogger(__name__)


def path_of(path: tuple[Any, ...]) -> str:
  """'Encoder/block_0/attn/query/kernel' style name of a pytree path."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def load_params(source: str, step: int | None = None) -> dict[str, np.ndarray]:
  """{path: array} of the params of a run (its best checkpoint, else latest, or `step`) or a checkpoint dir."""
  from model_lib.checkpoint_inspect import find_checkpoint, flat_leaves, restore_raw

  found = find_checkpoint(source)
  if found is None:
    raise FileNotFoundError(f"No checkpoint under '{source}' (config key init_from); point it at a training run's "
                            f"workdir.")
  directory, steps = found
  chosen = step if step is not None else steps[-1]
  if chosen not in steps:
    raise ValueError(f"config.init_from_step={chosen} is not in {directory} (steps {steps}).")
  return flat_leaves(restore_raw(directory, chosen, keys=("params",))["params"])


def partial_restore(target: Any, source: dict[str, np.ndarray]) -> tuple[Any, dict[str, list[str]]]:
  """Target params with every same-path, same-shape leaf taken from `source`; report of loaded/new/resized paths."""
  report = {"loaded": [], "new": [], "resized": [], "unused": []}
  used = set()

  def pick(path, leaf):
    name = path_of(path)
    if name not in source:
      report["new"].append(name)
      return leaf
    used.add(name)
    if tuple(source[name].shape) != tuple(leaf.shape):
      report["resized"].append(f"{name}: {tuple(source[name].shape)} -> {tuple(leaf.shape)}")
      return leaf
    report["loaded"].append(name)
    return jnp.asarray(source[name], leaf.dtype)

  params = jax.tree_util.tree_map_with_path(pick, target)
  report["unused"] = sorted(set(source) - used)
  return params, report


def update_multipliers(params: Any, freeze: str = "", lr_multipliers: Sequence[str] = (), layer_decay: float = 0.0,
                       layer_pattern: str = r"(?:block|layers|Block)_(\d+)") -> Any:
  """Per-leaf multipliers of the updates: 0 for `freeze` matches, `mult` for "regex=mult" rules (first match wins),
  times layer_decay ** (num_layers - depth) for layer-wise LR decay (embeddings depth 0, heads num_layers)."""
  rules = []
  for rule in lr_multipliers:
    pattern, sep, value = rule.rpartition("=")
    if not sep:
      raise ValueError(f"optimizer.lr_multipliers entry '{rule}' must look like 'regex=multiplier'.")
    rules.append((re.compile(pattern), float(value)))
  frozen = re.compile(freeze) if freeze else None
  layer_re = re.compile(layer_pattern)
  names = [path_of(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  if layer_decay and any(SCANNED_BLOCKS in n.split("/") for n in names):
    raise ValueError("optimizer.layer_decay needs one parameter per layer, but model.scan_layers=True stacks them; "
                     "set model.scan_layers=False.")
  depths = [int(m.group(1)) + 1 if (m := layer_re.search(n)) else None for n in names]
  num_layers = max([d for d in depths if d is not None], default=0)

  def multiplier(name: str, depth: int | None) -> float:
    if frozen is not None and frozen.search(name):
      return 0.0
    m = next((v for pattern, v in rules if pattern.search(name)), 1.0)
    if layer_decay:
      is_embedding = depth is None and re.search(r"(?i)embed", name) is not None
      d = depth if depth is not None else (0 if is_embedding else num_layers + 1)
      m *= layer_decay ** (num_layers + 1 - d)
    return m

  leaves = [multiplier(n, d) for n, d in zip(names, depths)]
  return jax.tree.unflatten(jax.tree.structure(params), leaves)
