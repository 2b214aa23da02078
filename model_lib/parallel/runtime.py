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


def setup_malloc(mmap_threshold_mb: int) -> bool:
  """Raises glibc's mmap threshold so large per-step buffers are reused, not page-faulted in each step.

  Measured on the LSTM step (2-core CPU): ~29K page faults per step with glibc's default, ~2K with 256 MiB.
  No-op (False) without glibc or with 0.
  """
  if mmap_threshold_mb <= 0:
    return False
  import ctypes
  import ctypes.util

  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  m_trim_threshold, m_mmap_threshold = -1, -3  # From glibc's malloc.h.
  size = mmap_threshold_mb << 20
  return bool(mallopt(m_mmap_threshold, size)) and bool(mallopt(m_trim_threshold, 2 * size))


def setup(config: ml_collections.ConfigDict) -> None:
  """Once per process, before any device is touched: jax.distributed (if enabled), compilation cache, malloc."""
  distributed.initialize(config.get("distributed"))
  setup_compilation_cache(config.train.get("compilation_cache_dir", ""))
  setup_malloc(config.train.get("malloc_mmap_threshold_mb", 0))


def make_runtime(config: ml_collections.ConfigDict, mesh: Mesh, shardings: TrainState,
                 rules: str = "dp") -> JitRuntime | PmapRuntime:
  """The runtime of `parallel.mode`: GSPMD over `mesh` with logical `rules` (jit) or per-device replicas (pmap)."""
  if section(config, "parallel").mode == "pmap":
    return PmapRuntime(mesh)
  return JitRuntime(mesh, shardings, rules)
