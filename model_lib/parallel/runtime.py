"""Process set-up (distributed start, compilation cache) and the runtime (jit or pmap) the trainer drives."""

from __future__ import annotations

import logging
import os

import jax
import ml_collections
from jax.sharding import Mesh

from model_lib.parallel import distributed
from model_lib.parallel.mesh import section
from model_lib.parallel.pmap import PmapRuntime
from model_lib.parallel.sharding import JitRuntime
from model_lib.train.state import TrainState

log = logging.getLogger(__name__)


def setup_compilation_cache(path: str) -> None:
  """Persistent XLA compilation cache in `path` ("" = off); JAX keeps the first directory it was given."""
  if not path:
    return
  path = os.path.abspath(os.path.expanduser(path))
  if jax.config.jax_compilation_cache_dir == path:
    return
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  log.debug("Persistent compilation cache: %s", path)


def setup(config: ml_collections.ConfigDict) -> None:
  """Once per process, before any device is touched: jax.distributed (if enabled) and the compilation cache."""
  distributed.initialize(config.get("distributed"))
  setup_compilation_cache(config.train.get("compilation_cache_dir", ""))


def make_runtime(config: ml_collections.ConfigDict, mesh: Mesh, shardings: TrainState,
                 rules: str = "dp") -> JitRuntime | PmapRuntime:
  """The runtime of `parallel.mode`: GSPMD over `mesh` with logical `rules` (jit) or per-device replicas (pmap)."""
  if section(config, "parallel").mode == "pmap":
    return PmapRuntime(mesh)
  return JitRuntime(mesh, shardings, rules)
