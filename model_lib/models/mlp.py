"""Multi-layer perceptron: [Flatten] -> (Dense -> [BatchNorm] -> act -> [Dropout]) x N -> Dense."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_lib.models.layers import activation
from model_lib.models.registry import MODELS


@MODELS.register("mlp")
class MLP(nn.Module):
  """An MLP; `hidden_sizes=()` gives a linear (logistic/linear regression) model."""

  num_outputs: int
  hidden_sizes: Sequence[int] = (128,)
  activation: str = "relu"
  dropout: float = 0.0
  batch_norm: bool = False
  batch_norm_momentum: float = 0.99
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    act = activation(self.activation)
    dtype = jnp.dtype(self.dtype)
    x = x.reshape((x.shape[0], -1)).astype(dtype)  # (B, D)
    for width in self.hidden_sizes:
      x = nn.Dense(width, dtype=dtype)(x)  # (B, width)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum, dtype=dtype)(x)
      x = act(x)
      if self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs, dtype=dtype)(x).astype(jnp.float32)  # (B, num_outputs)
