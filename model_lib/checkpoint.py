"""Orbax checkpoints of the train state, the data-iterator state and loop metadata, in one place.

Layout: `<workdir>/checkpoints/<step>/` keeps the latest `keep` steps; `<workdir>/best/<step>/`
keeps the single best one (by the early-stopping metric). Orbax writes each step into a
temporary directory and renames it on commit, so a kill mid-save never damages a committed step;
restore walks back from the newest step and skips any that fail to load, with a warning.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """No usable checkpoint where one was required (every step failed to restore)."""


def _manager(directory: str, keep: int, async_save: bool = True, read_only: bool = False) -> ocp.CheckpointManager:
  if read_only:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0, max_to_keep=None)
  else:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, cleanup_tmp_directories=True, enable_async_checkpointing=async_save,
        # Orbax names cross-process barriers by step: distinct prefixes let 'best' and 'checkpoints' save together.
        multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=os.path.basename(directory)))
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree, used as a restore target."""
  return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else ocp.utils.to_shape_dtype_struct(x), tree)


class Checkpointer:
  """Saves and restores `(state, data_state, meta)`; `kind` is 'checkpoints' (latest K) or 'best'."""

  def __init__(self, workdir: str, kind: str = "checkpoints", keep: int = 3, async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.join(workdir, kind)
    self._mngr = _manager(self.directory, keep, async_save, read_only)
    self._unreadable: set[int] = set()  # Committed steps that failed to restore: rewritten when reached again.

  def save(self, step: int, state: Any, data_state: dict[str, Any] | None = None,
           meta: dict[str, Any] | None = None) -> None:
    """Starts an (async) save of step `step`; an already committed, readable step is kept as it is."""
    if step in self._mngr.all_steps():
      if step not in self._unreadable:
        return
      self._mngr.delete(step)
      self._unreadable.discard(step)
    self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state or {}),
        meta=ocp.args.JsonSave(meta or {})))

  def steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def restore(self, target_state: Any, step: int | None = None) -> tuple[int, Any, dict, dict] | None:
    """Restores `step` (default: the newest loadable one) into the structure of `target_state`.

    Returns (step, state, data_state, meta), or None if there is no checkpoint at all. A step that
    fails to load is reported and skipped; if every step fails, raises CheckpointError.
    """
    self._mngr.wait_until_finished()
    steps = self.steps() if step is None else [step]
    if not steps:
      return None
    target = abstract_like(target_state)
    errors = []
    for s in reversed(steps):
      try:
        out = self._mngr.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
        return s, out["state"], dict(out["data"] or {}), dict(out["meta"] or {})
      except Exception as e:  # noqa: BLE001 - any failure means this step is unusable.
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.warning("Checkpoint step %d in %s could not be restored (%s); trying an older one.", s, self.directory, msg)
        errors.append((s, msg))
        self._unreadable.add(s)
    raise CheckpointError(f"No checkpoint in {self.directory} could be restored (tried steps "
                       f"{[s for s, _ in errors]}; last error: {errors[-1][1]}). Delete the directory to start over.")

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()
