"""Shardings of the train state and of batches; the jit runtime (GSPMD over the mesh).

The state is born sharded: `jax.eval_shape` of the full init (model.init + tx.init) gives the abstract
state with logical axis names (boxed params, or Flax's 'params_axes' collection), the rules turn them into
NamedShardings, and `jax.jit(init, out_shardings=...)` creates every shard on its device, so nothing is ever
materialised whole on one device. Batches are split over (data, fsdp); each process contributes its own rows.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import numpy as np
import optax
from flax.core import meta
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from model_lib.parallel.mesh import BATCH_AXES, batch_shards
from model_lib.parallel.rules import logical_axis_rules, param_spec
from model_lib.train.state import TrainState, create_train_state

Batch = dict[str, Any]


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data axes, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: str) -> Iterator[None]:
  """`jax.set_mesh(mesh)` and the logical rules, for code that traces eagerly-called functions (e.g. the init).

  Without a mesh in context `nn.with_logical_constraint` is a no-op. Eager ops on arrays committed to a
  single device fail inside `jax.set_mesh`, so keep this region short; jitted steps use `under_mesh`.
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(logical_axis_rules(rules)):
    yield


def under_mesh(fn: Callable, mesh: Mesh, rules: str) -> Callable:
  """`fn` that, whenever it is traced, sees `mesh` (abstract) and the logical rules, so constraints resolve."""

  @functools.wraps(fn)
  def traced(*args: Any, **kwargs: Any) -> Any:
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(logical_axis_rules(rules)):
      return fn(*args, **kwargs)

  return traced


def _is_box(x: Any) -> bool:
  return isinstance(x, meta.Partitioned)


def abstract_variables(model: nn.Module, sample_x: Any) -> dict[str, Any]:
  """`model.init`'s variables as ShapeDtypeStructs, logical-axis boxes kept."""
  key = jax.random.key(0)
  return jax.eval_shape(lambda k, x: model.init({"params": k, "dropout": k}, x, train=False), key, sample_x)


def annotated_params(variables: dict[str, Any]) -> Any:
  """The params with every annotated leaf boxed in `nn.LogicallyPartitioned`; names from boxes or 'params_axes'."""
  axes = variables.get("params_axes", {})

  def box(path: tuple, leaf: Any) -> Any:
    if _is_box(leaf):
      return leaf
    node = axes
    for k in path[:-1]:
      node = node.get(k.key, {}) if hasattr(node, "get") else {}
    found = node.get(f"{path[-1].key}_axes") if hasattr(node, "get") else None
    return nn.LogicallyPartitioned(leaf, tuple(found.names)) if found is not None else leaf

  return jax.tree_util.tree_map_with_path(box, variables["params"], is_leaf=_is_box)


def _sharding_tree(tree: Any, mesh: Mesh, rules: str) -> Any:
  """NamedShardings for a tree of (boxed) abstract leaves, in the structure of the unboxed tree."""
  sizes = dict(mesh.shape)

  def one(x: Any) -> Any:
    value, names = (x.value, x.names) if _is_box(x) else (x, None)
    if not hasattr(value, "shape"):
      return value  # An empty node such as optax's MaskedNode: no array, no sharding.
    return NamedSharding(mesh, param_spec(value.shape, names, rules, sizes))

  return jax.tree.map(one, tree, is_leaf=_is_box)


def state_shardings(model: nn.Module, tx: optax.GradientTransformation, sample_x: Any, mesh: Mesh,
                    rules: str) -> TrainState:
  """A TrainState of NamedShardings: params and optimizer state by logical names, everything else replicated."""
  variables = abstract_variables(model, sample_x)
  params = annotated_params(variables)
  opt_state = jax.eval_shape(tx.init, params)  # Boxes flow through tx.init: moments share their param's names.
  rep = replicated(mesh)
  return TrainState(step=rep, apply_fn=model.apply, params=_sharding_tree(params, mesh, rules), tx=tx,
                    opt_state=_sharding_tree(opt_state, mesh, rules),
                    batch_stats=jax.tree.map(lambda _: rep, nn.meta.unbox(variables.get("batch_stats", {}))),
                    lr_scale=rep)


def init_sharded_state(model: nn.Module, tx: optax.GradientTransformation, sample_x: Any, params_key: jax.Array,
                       mesh: Mesh, rules: str) -> tuple[TrainState, TrainState]:
  """(state, shardings): the train state created directly in its shards on `mesh`."""
  with use_mesh(mesh, rules):
    shardings = state_shardings(model, tx, sample_x, mesh, rules)
    return create_train_state(model, tx, sample_x, params_key, shardings), shardings


def abstract_state(model: nn.Module, tx: optax.GradientTransformation, sample_x: Any, mesh: Mesh,
                   rules: str) -> TrainState:
  """ShapeDtypeStructs carrying `mesh`'s shardings: a restore target for any checkpoint, nothing allocated."""
  shardings = state_shardings(model, tx, sample_x, mesh, rules)
  shapes = jax.eval_shape(lambda: create_train_state(model, tx, sample_x, jax.random.key(0)))
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def shard_batch(batch: Batch, mesh: Mesh) -> Batch:
  """This process's rows of the global batch -> global arrays split over the data axes (scalars replicated)."""
  split, rep = batch_sharding(mesh), replicated(mesh)
  return {k: jax.make_array_from_process_local_data(split if np.ndim(v) else rep, np.asarray(v))
          for k, v in batch.items()}


def put_global_batch(batch: Batch, mesh: Mesh) -> Batch:
  """A batch every process holds whole (evaluation) -> global arrays split over the data axes."""
  split, rep = batch_sharding(mesh), replicated(mesh)
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    out[k] = jax.make_array_from_callback(v.shape, split if v.ndim else rep, lambda idx, v=v: v[idx])
  return out


class JitRuntime:
  """One jitted program over the mesh (GSPMD): explicit in/out shardings from the annotated state, state donated."""

  mode = "jit"
  axis_name = None  # Steps need no collective of their own: the compiler inserts them.

  def __init__(self, mesh: Mesh, shardings: TrainState, rules: str = "dp"):
    self.mesh = mesh
    self.shardings = shardings
    self.rules = rules

  def put_batch(self, batch: Batch) -> Batch:
    return shard_batch(batch, self.mesh)

  def eval_batch_size(self, size: int) -> int:
    """`size` rounded up to split evenly over the data axes (the padding rows are masked)."""
    n = batch_shards(self.mesh)
    return -(-size // n) * n

  def jit_train_step(self, train_step: Callable) -> Any:
    rep = replicated(self.mesh)
    # The batch sharding comes from the arrays `put_batch` made (its keys differ between tasks).
    return jax.jit(under_mesh(train_step, self.mesh, self.rules), in_shardings=(self.shardings, None, rep),
                   out_shardings=(self.shardings, rep), donate_argnums=0)

  def jit_eval_step(self, eval_step: Callable) -> Callable[[TrainState, Batch], Any]:
    """`eval_step(state, host_batch)`; outputs replicated so every process can read them."""
    step = jax.jit(under_mesh(eval_step, self.mesh, self.rules), in_shardings=(self.shardings, None),
                   out_shardings=replicated(self.mesh))
    return lambda state, batch: step(state, put_global_batch(batch, self.mesh))

  def from_global(self, state: TrainState) -> TrainState:
    """Checkpoint layout -> the layout the steps take (the same under jit)."""
    return state

  def to_global(self, state: TrainState) -> TrainState:
    return state
