"""Reading a checkpoint without the model: steps, parameter shapes, and an exact digest of the weights.

The 'state' item of a step written by `model_lib.checkpoint.Checkpointer` is restored as raw NumPy
arrays from its own metadata (no target pytree, no model code, any device topology), and only the
`params` and `batch_stats` subtrees are read.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _path_str(path: tuple[Any, ...]) -> str:
  return jax.tree_util.keystr(path, simple=True, separator="/")


def flat_leaves(tree: Any) -> dict[str, np.ndarray]:
  """`{'Dense_0/kernel': array}` for every leaf of a pytree, sorted by path."""
  leaves = {_path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  return dict(sorted(leaves.items()))


def params_digest(params: Any) -> str:
  """SHA-256 over (path, dtype, shape, little-endian bytes) of every leaf in sorted path order."""
  h = hashlib.sha256()
  for path, x in flat_leaves(params).items():
    x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<"))
    h.update(f"{path}\0{x.dtype.str}\0{x.shape}\0".encode())  # Header fixes the byte count of the data.
    h.update(x.tobytes())
  return h.hexdigest()


def _manager(directory: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
  handlers = {"state": ocp.PyTreeCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
              "meta": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def find_checkpoint(source: str) -> tuple[str, list[int]] | None:
  """(directory, its steps) of a run's best checkpoints, else its latest ones; `source` may also be such a directory.

  None when there is no committed step.
  """
  candidates = [source] if os.path.basename(os.path.normpath(source)) in ("best", "checkpoints") else [
      os.path.join(source, "best"), os.path.join(source, "checkpoints")]
  for directory in candidates:
    steps = sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []
    if steps:
      return directory, steps
  return None


def restore_raw(directory: str, step: int, keys: tuple[str, ...] = ("params", "batch_stats")) -> dict[str, Any]:
  """Top-level `keys` of the 'state' item of `step` as NumPy pytrees, without knowing the model."""
  mngr = _manager(directory)
  try:
    metadata = mngr.item_metadata(step)["state"]
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    item = {k: tree[k] for k in keys if k in tree and jax.tree.leaves(tree[k])}
    if not item:
      return {}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True)))
    return dict(out["state"])
  finally:
    mngr.close()


def inspect_checkpoint(workdir: str, step: int | None = None, kind: str = "checkpoints") -> dict[str, Any]:
  """Steps in `<workdir>/<kind>`, and for `step` (default: latest) parameter count, leaves and digest."""
  directory = os.path.join(workdir, kind)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoint directory {directory}.")
  mngr = _manager(directory)
  steps = sorted(mngr.all_steps())
  mngr.close()
  if not steps:
    raise FileNotFoundError(f"{directory} holds no committed checkpoint.")
  chosen = steps[-1] if step is None else step
  if chosen not in steps:
    raise ValueError(f"Step {chosen} is not in {directory}; available steps: {steps}.")
  state = restore_raw(directory, chosen)
  if "params" not in state:
    raise ValueError(f"Checkpoint {directory}/{chosen} has no 'params' in its state.")
  leaves = flat_leaves(state["params"])
  out = {
      "directory": os.path.abspath(directory),
      "steps": steps,
      "step": chosen,
      "num_params": int(sum(x.size for x in leaves.values())),
      "num_bytes": int(sum(x.nbytes for x in leaves.values())),
      "params": {p: {"shape": list(x.shape), "dtype": str(x.dtype)} for p, x in leaves.items()},
      "params_digest": params_digest(state["params"]),
  }
  if "batch_stats" in state:
    out["batch_stats_digest"] = params_digest(state["batch_stats"])
  return out
