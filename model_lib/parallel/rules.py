"""Logical axis names -> mesh axes: rule sets DP, FSDP, TP (Megatron) and FSDP x TP.

A parameter dimension is only sharded when its size divides evenly (jit rejects uneven shardings); otherwise
it stays replicated. FSDP shards each annotated parameter (and its optimizer state) over 'fsdp' on its
largest divisible annotated dimension; TP maps 'heads', 'mlp' and 'vocab' to 'tensor', so attention and MLP
blocks are column-parallel in and row-parallel out, and token embeddings / LM heads are split by vocabulary.
"""

from __future__ import annotations

from typing import Sequence

from jax.sharding import PartitionSpec as P

from model_lib.models.transformer import LAYERS_AXIS
from model_lib.parallel.mesh import BATCH_AXES

RULE_SETS = ("dp", "fsdp", "tp", "fsdp_tp")
TENSOR_AXES = {"heads": "tensor", "mlp": "tensor", "vocab": "tensor"}


def resolve_rules(name: str, sizes: dict[str, int]) -> str:
  """The concrete rule set: `name`, or for 'auto' the one the axis sizes call for."""
  if name != "auto":
    return name
  fsdp, tensor = sizes.get("fsdp", 1) > 1, sizes.get("tensor", 1) > 1
  return {(True, True): "fsdp_tp", (True, False): "fsdp", (False, True): "tp"}.get((fsdp, tensor), "dp")


def logical_axis_rules(rules: str) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
  """Rules for `nn.logical_axis_rules`, so activation constraints (`nn.with_logical_constraint`) resolve."""
  out: list[tuple[str, str | tuple[str, ...] | None]] = [("batch", BATCH_AXES)]
  if rules in ("tp", "fsdp_tp"):
    out += list(TENSOR_AXES.items())
  return tuple(out)


def param_spec(shape: Sequence[int], names: Sequence[str | None] | None, rules: str, sizes: dict[str, int]) -> P:
  """PartitionSpec of one parameter (or optimizer-state leaf) of `shape` with logical `names` (None: replicated)."""
  if not names or len(names) != len(shape):
    return P()
  spec: list[str | None] = [None] * len(shape)
  if rules in ("tp", "fsdp_tp") and sizes.get("tensor", 1) > 1:
    for i, (name, dim) in enumerate(zip(names, shape)):
      axis = TENSOR_AXES.get(name or "")
      if axis and axis not in spec and dim % sizes[axis] == 0:
        spec[i] = axis
  fsdp = sizes.get("fsdp", 1)
  if rules in ("fsdp", "fsdp_tp") and fsdp > 1:
    free = [i for i, (name, dim) in enumerate(zip(names, shape))
            if name and name != LAYERS_AXIS and spec[i] is None and dim % fsdp == 0]  # See stack_blocks.
    if free:
      spec[max(free, key=lambda i: (shape[i], -i))] = "fsdp"  # The largest dimension; the first on ties.
  while spec and spec[-1] is None:
    spec.pop()
  return P(*spec)
