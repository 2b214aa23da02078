"""Convolutional classifier: (Conv -> [BatchNorm] -> act -> [MaxPool]) x N -> Flatten -> MLP head."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_lib.models.layers import activation
from model_lib.models.registry import MODELS


@MODELS.register("cnn")
class CNN(nn.Module):
  """A plain conv net in NHWC; inputs of shape (B, H, W) get a channel axis."""

  num_outputs: int
  features: Sequence[int] = (32, 64)
  kernel_size: int = 3
  padding: str = "VALID"
  pool_every: int = 1  # Max-pool 2x2 after every `pool_every` conv layers (0 = never).
  dense_sizes: Sequence[int] = (128,)
  activation: str = "relu"
  conv_dropout: float = 0.0
  dropout: float = 0.0
  batch_norm: bool = False
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    act = activation(self.activation)
    dtype = jnp.dtype(self.dtype)
    if x.ndim == 3:
      x = x[..., None]  # (B, H, W) -> (B, H, W, 1)
    x = x.astype(dtype)
    k = (self.kernel_size, self.kernel_size)
    for i, feats in enumerate(self.features):
      x = nn.Conv(feats, k, padding=self.padding, use_bias=not self.batch_norm, dtype=dtype)(x)  # (B, H', W', feats)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, dtype=dtype)(x)
      x = act(x)
      if self.pool_every and (i + 1) % self.pool_every == 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))  # (B, H'/2, W'/2, feats)
      if self.conv_dropout > 0:
        x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
    x = x.reshape((x.shape[0], -1))  # (B, H*W*C)
    for width in self.dense_sizes:
      x = act(nn.Dense(width, dtype=dtype)(x))
      if self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs, dtype=dtype)(x).astype(jnp.float32)  # (B, num_outputs)
