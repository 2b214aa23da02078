"""The device mesh from `config.mesh`: axes (data, fsdp, tensor) over every device of every process.

The shape is checked against the device count and the batch size before anything is compiled, with a
one-line `ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import ml_collections
from jax.sharding import AxisType, Mesh

from model_lib.config import ConfigError, base_config

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # The batch is split over both: FSDP is data parallelism with sharded state.


def section(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """`config.<name>` for name in mesh/parallel/distributed, or its defaults (configs saved before these keys)."""
  return config.get(name) or base_config()[name]


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> dict[str, int]:
  """{axis: size} with the -1 axis resolved; raises ConfigError if it cannot tile `num_devices` or split the batch."""
  m = section(config, "mesh")
  sizes = {a: int(m[a]) for a in AXES}
  for axis, size in sizes.items():
    if size == 0 or size < -1:
      raise ConfigError(f"mesh.{axis} must be -1 (the rest of the devices) or >= 1, got {size}.")
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ConfigError(f"At most one of mesh.data/fsdp/tensor may be -1, got {'/'.join(str(m[a]) for a in AXES)}; "
                      f"set the others.")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if num_devices % fixed:
      others = " x ".join(f"mesh.{a}={s}" for a, s in sizes.items() if s != -1)
      raise ConfigError(f"{others} = {fixed} does not divide the {num_devices} devices, so mesh.{free[0]}=-1 has no "
                        f"size; choose sizes whose product divides {num_devices}.")
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ConfigError(f"mesh.data x mesh.fsdp x mesh.tensor = {' x '.join(str(s) for s in sizes.values())} = "
                      f"{math.prod(sizes.values())} must equal the {num_devices} devices; set one of them to -1 "
                      f"(--config.mesh.data=-1) to use the rest.")
  shards = sizes["data"] * sizes["fsdp"]
  batch = config.data.batch_size
  if batch % shards:
    raise ConfigError(f"data.batch_size={batch} must be divisible by mesh.data x mesh.fsdp = {shards} (the batch is "
                      f"split over them); use a multiple of {shards} or change config.mesh.")
  if batch % num_processes:
    raise ConfigError(f"data.batch_size={batch} must be divisible by the {num_processes} processes (each loads its "
                      f"share); use a multiple of {num_processes}.")
  if section(config, "parallel").mode == "pmap" and (sizes["fsdp"], sizes["tensor"]) != (1, 1):
    raise ConfigError(f"parallel.mode=pmap is data parallelism only: set mesh.fsdp=1 and mesh.tensor=1 (got "
                      f"{sizes['fsdp']}, {sizes['tensor']}), or use parallel.mode=jit.")
  return sizes


def make_mesh(config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes), Auto axis types."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = mesh_shape(config, len(devices), jax.process_count())
  # Auto axes: GSPMD propagates shardings through Linen code (Explicit axes reject sharded contractions).
  return jax.make_mesh(tuple(sizes[a] for a in AXES), AXES, axis_types=(AxisType.Auto,) * len(AXES),
                       devices=devices)


def batch_shards(mesh: Mesh) -> int:
  """How many ways the batch is split on `mesh`."""
  return math.prod(mesh.shape.get(a, 1) for a in BATCH_AXES)
