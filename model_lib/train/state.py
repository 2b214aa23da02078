"""The training state: params, optimizer state, BatchNorm statistics and step in one pytree.

Randomness is not stored as a mutable key: the dropout key of step t is
`fold_in(dropout_key, t)` with `dropout_key` derived from `config.seed`, so the step counter
is the RNG position and a restored state continues the exact random stream.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """Flax's TrainState plus BatchNorm statistics (an empty dict for models without them)."""

  batch_stats: Any = None
  lr_scale: Any = None  # Multiplies every update; lowered by the NaN 'rollback' policy, saved with the state.


def rng_streams(seed: int) -> dict[str, jax.Array]:
  """The named PRNG keys of a run: 'params' (init), 'dropout' (train steps), 'data' (spare)."""
  root = jax.random.key(seed)
  params_key, dropout_key, data_key = jax.random.split(root, 3)
  return {"params": params_key, "dropout": dropout_key, "data": data_key}


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, sample_x: jax.Array,
                       params_key: jax.Array, shardings: TrainState | None = None) -> TrainState:
  """Initialises the model on a sample batch and wraps everything into a TrainState, in one jitted program.

  With `shardings` (see `model_lib.parallel.state_shardings`) every leaf is created directly in its shards.
  """

  def init(key: jax.Array, x: jax.Array) -> TrainState:
    # Logical axis names live in the abstract tree (parallel/), not in the state.
    variables = nn.meta.unbox(model.init({"params": key, "dropout": key}, x, train=False))
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                              batch_stats=variables.get("batch_stats", {}))
    # A concrete int32 step (not a weakly typed Python 0) so the first and later steps share one executable.
    return state.replace(step=jnp.zeros((), jnp.int32), lr_scale=jnp.ones((), jnp.float32))

  init_jit = jax.jit(init) if shardings is None else jax.jit(init, out_shardings=shardings)
  return init_jit(params_key, sample_x)


def count_params(params: Any) -> int:
  """Total number of scalar parameters."""
  return int(sum(jnp.size(p) for p in jax.tree.leaves(params)))
