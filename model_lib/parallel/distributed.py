"""Multi-host start-up: `jax.distributed.initialize` from `config.distributed`, before anything touches a device.

With `coordinator_address` empty, JAX detects the cluster (TPU pod slices, SLURM, GKE/Kubernetes, Open MPI).
With an explicit address the coordinator (process 0) listens on that address only, not on every interface.
"""

from __future__ import annotations

import logging

import jax
import ml_collections

from model_lib.config import ConfigError

log = logging.getLogger(__name__)


def initialize(dist: ml_collections.ConfigDict | None) -> bool:
  """Starts this process's share of a multi-process run if `dist.enabled`; True if one is running (idempotent)."""
  if jax.distributed.is_initialized():
    return True
  if dist is None or not dist.enabled:
    return False
  kwargs: dict = {}
  if dist.coordinator_address:
    kwargs.update(coordinator_address=dist.coordinator_address, coordinator_bind_address=dist.coordinator_address)
  if dist.num_processes > 0:
    kwargs["num_processes"] = dist.num_processes
  if dist.process_id >= 0:
    kwargs["process_id"] = dist.process_id
  if dist.local_device_ids:
    kwargs["local_device_ids"] = [int(i) for i in dist.local_device_ids.split(",")]
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"jax.distributed.initialize failed ({first}); check config.distributed (coordinator_address "
                      f"host:port reachable from every process, num_processes, process_id), and that nothing used "
                      f"JAX before the trainer started.") from None
  log.info("Process %d of %d: %d local / %d global devices", jax.process_index(), jax.process_count(),
           jax.local_device_count(), jax.device_count())
  return True
