"""`parallel.mode=pmap`: data parallelism with `jax.pmap`, `lax.pmean` of gradients, cross-replica BatchNorm.

The state is replicated with a leading device axis (n, ...) while training; checkpoints hold the same
global (replicated) layout as the jit mode, so runs move between the two modes. Each device gets an equal
slice of the batch, so averaging per-device mean gradients gives the global-batch gradient.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from model_lib.train.state import TrainState

Batch = dict[str, Any]
AXIS = "batch"


class PmapRuntime:
  """Steps under `jax.pmap` over every device; `global_mesh` is the (data, 1, 1) mesh of the checkpoint layout."""

  mode = "pmap"
  axis_name = AXIS

  def __init__(self, global_mesh: Mesh):
    self.global_mesh = global_mesh
    self.mesh = Mesh(np.asarray(jax.devices()), (AXIS,), axis_types=(AxisType.Auto,))
    self.stacked = NamedSharding(self.mesh, P(AXIS))
    self.num_devices = jax.device_count()
    self.local_devices = jax.local_device_count()

  def _split(self, x: np.ndarray) -> jax.Array:
    """(B_local, ...) -> global (num_devices, B / num_devices, ...), one slice per device."""
    x = np.asarray(x)
    x = x.reshape((self.local_devices, -1) + x.shape[1:]) if x.ndim else np.broadcast_to(x, (self.local_devices,))
    return jax.make_array_from_process_local_data(self.stacked, x)

  def put_batch(self, batch: Batch) -> Batch:
    return {k: self._split(v) for k, v in batch.items()}

  def eval_batch_size(self, size: int) -> int:
    return -(-size // self.num_devices) * self.num_devices

  def jit_train_step(self, train_step: Callable) -> Any:
    return jax.pmap(train_step, axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=0)

  def jit_eval_step(self, eval_step: Callable) -> Callable[[TrainState, Batch], Any]:
    """`eval_step(state, host_batch)` with the step's summed statistics and all scores, as under jit."""
    step = jax.pmap(eval_step, axis_name=AXIS)

    def run(state: TrainState, batch: Batch) -> dict[str, Any]:
      rows = len(next(iter(batch.values()))) // jax.process_count()
      lo = jax.process_index() * rows
      out = step(state, self.put_batch({k: np.asarray(v)[lo:lo + rows] for k, v in batch.items()}))
      scores = out["scores"]
      return {"stats": jax.tree.map(lambda s: s[0], out["stats"]),  # psum'd: every replica holds the total.
              "scores": scores.reshape((-1,) + scores.shape[2:])}

    return run

  def from_global(self, state: TrainState) -> TrainState:
    """Replicated global arrays -> (num_devices, ...) stacks, from each device's own copy (no host round trip)."""

    def stack(x: jax.Array) -> jax.Array:
      parts = [s.data[None] for s in x.addressable_shards]
      return jax.make_array_from_single_device_arrays((self.num_devices,) + x.shape, self.stacked, parts)

    return jax.tree.map(stack, state)

  def to_global(self, state: TrainState) -> TrainState:
    """(num_devices, ...) stacks -> arrays replicated over `global_mesh` (the checkpoint layout)."""
    rep = NamedSharding(self.global_mesh, P())

    def unstack(x: jax.Array) -> jax.Array:
      return jax.make_array_from_single_device_arrays(x.shape[1:], rep, [s.data[0] for s in x.addressable_shards])

    return jax.tree.map(unstack, state)
