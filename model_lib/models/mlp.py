"""Multi-layer perceptron: [Flatten] -> (Dense -> [BatchNorm] -> act -> [Dropout]) x N -> Dense.

Logical axis names of the parameters (read by `model_lib.parallel` to shard them) go to the 'params_axes'
collection, Flax's `partitioning.param_with_axes` convention, so `params` itself stays a tree of plain arrays.
Dense kernels alternate ('embed', 'mlp') / ('mlp', 'embed'), so tensor parallelism over 'mlp' is Megatron's
column- then row-parallel pair; the head is (…, 'classes').
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import partitioning

from model_lib.models.dropout import Dropout
from model_lib.models.layers import activation
from model_lib.models.registry import MODELS

Axes = tuple[str | None, ...]


def _last(_, value):
  return value


def sow_axes(module: nn.Module, **axes: Axes) -> None:
  """Records `<param>_axes` logical names for `module`'s params in 'params_axes' (only while initialising)."""
  for param, names in axes.items():
    module.sow("params_axes", f"{param}_axes", partitioning.AxisMetadata(names), reduce_fn=_last, init_fn=lambda: None)


class Dense(nn.Dense):
  """nn.Dense (same params, same auto-name 'Dense_i') whose kernel (in, out) and bias (out,) carry logical names."""

  axes: Axes = (None, None)

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    y = super().__call__(inputs)
    sow_axes(self, kernel=self.axes, **({"bias": self.axes[1:]} if self.use_bias else {}))
    return y


class Conv(nn.Conv):
  """nn.Conv with kernel names ('conv_h', 'conv_w', 'conv_in', 'conv_out') and bias ('conv_out',)."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    y = super().__call__(inputs)
    sow_axes(self, kernel=("conv_h", "conv_w", "conv_in", "conv_out"), **({"bias": ("conv_out",)} if self.use_bias
                                                                          else {}))
    return y


class BatchNorm(nn.BatchNorm):
  """nn.BatchNorm whose scale/bias carry the logical name of the feature axis (`feature_axis`)."""

  feature_axis: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None, **kwargs) -> jax.Array:
    y = super().__call__(x, use_running_average, **kwargs)
    names = {"scale": (self.feature_axis,)} if self.use_scale else {}
    sow_axes(self, **names, **({"bias": (self.feature_axis,)} if self.use_bias else {}))
    return y


@MODELS.register("mlp")
class MLP(nn.Module):
  """An MLP; `hidden_sizes=()` gives a linear (logistic/linear regression) model."""

  num_outputs: int
  hidden_sizes: Sequence[int] = (128,)
  activation: str = "relu"
  dropout: float = 0.0
  batch_norm: bool = False
  batch_norm_momentum: float = 0.99
  batch_norm_axis_name: str | None = None  # pmap/shard_map axis averaging BatchNorm statistics (set by the trainer).
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    act = activation(self.activation)
    dtype = jnp.dtype(self.dtype)
    x = x.reshape((x.shape[0], -1)).astype(dtype)  # (B, D)
    names = ("embed", "mlp")
    for width in self.hidden_sizes:
      x = Dense(width, dtype=dtype, axes=names)(x)  # (B, width)
      if self.batch_norm:
        x = BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum, dtype=dtype,
                      axis_name=self.batch_norm_axis_name, feature_axis=names[1])(x)
      x = act(x)
      if self.dropout > 0:
        x = Dropout(self.dropout, deterministic=not train)(x)
      names = names[::-1]
    return Dense(self.num_outputs, dtype=dtype, axes=(names[0], "classes"))(x).astype(jnp.float32)  # (B, num_outputs)
