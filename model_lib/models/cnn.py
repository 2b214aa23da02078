"""Convolutional classifier: (Conv -> [BatchNorm] -> act -> [MaxPool]) x N -> Flatten -> MLP head.

Parameters carry logical axis names in 'params_axes' (see `mlp`): conv kernels ('conv_h', 'conv_w', 'conv_in',
'conv_out'), dense layers as in the MLP. `conv_impl` picks how convs and max-pools are differentiated (see `conv`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_lib.models.conv import Conv, max_pool, resolve_conv_impl
from model_lib.models.dropout import Dropout
from model_lib.models.layers import activation
from model_lib.models.mlp import BatchNorm, Dense
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
  batch_norm_axis_name: str | None = None  # pmap/shard_map axis averaging BatchNorm statistics (set by the trainer).
  dtype: str = "float32"
  conv_impl: str = "auto"  # "xla", "explicit" (hand-written conv/pool backward, for XLA:CPU) or "auto" (by backend).

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    act = activation(self.activation)
    impl = resolve_conv_impl(self.conv_impl)
    dtype = jnp.dtype(self.dtype)
    if x.ndim == 3:
      x = x[..., None]  # (B, H, W) -> (B, H, W, 1)
    x = x.astype(dtype)
    k = (self.kernel_size, self.kernel_size)
    for i, feats in enumerate(self.features):
      x = Conv(feats, k, padding=self.padding, use_bias=not self.batch_norm, dtype=dtype,
               impl=impl)(x)  # (B, H', W', feats)
      if self.batch_norm:
        x = BatchNorm(use_running_average=not train, dtype=dtype, axis_name=self.batch_norm_axis_name,
                      feature_axis="conv_out")(x)
      x = act(x)
      if self.pool_every and (i + 1) % self.pool_every == 0:
        x = max_pool(x, 2, impl=impl)  # (B, H'/2, W'/2, feats)
      if self.conv_dropout > 0:
        x = Dropout(self.conv_dropout, deterministic=not train)(x)
    x = x.reshape((x.shape[0], -1))  # (B, H*W*C)
    names = ("embed", "mlp")
    for width in self.dense_sizes:
      x = act(Dense(width, dtype=dtype, axes=names)(x))
      if self.dropout > 0:
        x = Dropout(self.dropout, deterministic=not train)(x)
      names = names[::-1]
    return Dense(self.num_outputs, dtype=dtype, axes=(names[0], "classes"))(x).astype(jnp.float32)  # (B, num_outputs)
