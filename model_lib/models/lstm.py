"""LSTMs over tokens: a sequence classifier (optionally stacked and bidirectional) and a language model.

The input projection of every timestep is one matmul before the scan; the scan only does h @ W_h:
  z = x W_x + b + h W_h,  i, f, g, o = split(z),  c' = σ(f) c + σ(i) tanh(g),  h' = σ(o) tanh(c').
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_lib.models import lstm_kernels
from model_lib.models.dropout import Dropout
from model_lib.models.layers import resolve_impl
from model_lib.models.registry import MODELS

Carry = tuple[jax.Array, jax.Array]  # (c, h), each (B, H) float32.


def _forget_bias_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """Zeros except 1 for the forget gate (Keras' unit_forget_bias), gates ordered i, f, g, o."""
  del key
  hidden = shape[0] // 4
  return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1)


class LSTMRecurrence(nn.RNNCellBase):
  """One LSTM step given the precomputed input gates x W_x + b (B, 4H)."""

  hidden_size: int
  dtype: str = "float32"

  def setup(self):
    self.recurrent_kernel = self.param(
        "recurrent_kernel", nn.with_logical_partitioning(nn.initializers.orthogonal(), (None, "mlp")),
        (self.hidden_size, 4 * self.hidden_size), jnp.float32)

  def __call__(self, carry: Carry, gates_x: jax.Array) -> tuple[Carry, jax.Array]:
    c, h = carry
    dtype = jnp.dtype(self.dtype)
    w_h = self.recurrent_kernel
    # The cell state stays float32 under bfloat16 compute: it accumulates over the whole sequence.
    z = gates_x.astype(jnp.float32) + jnp.dot(h.astype(dtype), w_h.astype(dtype)).astype(jnp.float32)  # (B, 4H)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
    del rng
    zeros = jnp.zeros((*input_shape[:-1], self.hidden_size), jnp.float32)
    return zeros, zeros

  @property
  def num_feature_axes(self) -> int:
    return 1


LSTM_IMPLS = ("auto", "scan", "fused")
# "fused" is measured faster on CPU (see lstm_kernels). On GPU and TPU (not measured) it should win for the same
# reason: each scan step is a chain of small launches there too, and the fused reverse step has one matmul where
# autodiff's has two plus an accumulation. Other (plugin) backends keep the plain reference scan.
_AUTO_IMPL = {"cpu": "fused", "gpu": "fused", "tpu": "fused"}


def resolve_lstm_impl(impl: str, backend: str | None = None) -> str:
  """The recurrence implementation `impl` names on `backend` (default: JAX's): 'scan' or 'fused'."""
  return resolve_impl("lstm_impl", impl, LSTM_IMPLS, _AUTO_IMPL, "scan", backend)


class _DenseParams(nn.Module):
  """The kernel and bias an `nn.Dense` would create (same names, shapes, initializers), returned unapplied."""

  features: int
  kernel_init: nn.initializers.Initializer
  bias_init: nn.initializers.Initializer

  @nn.compact
  def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
    kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
    return kernel, self.param("bias", self.bias_init, (self.features,), jnp.float32)


class LSTM(nn.Module):
  """One LSTM layer over (B, T, D) -> (final carry, outputs (B, T, H)).

  With `seq_lengths` (B,) the final carry is the state at each sequence's last real token, and `reverse=True`
  starts at that token (padding stays at the end; outputs come back in input order). With `decode=True` the carry
  lives in the 'cache' collection, so consecutive calls continue one sequence.
  `lstm_impl`: "scan" differentiates an `nn.RNN` scan; "fused" runs `lstm_kernels.lstm_layer` (same
  parameters and math, hand-written backward); "auto" picks per backend. Decoding always uses "scan".
  """

  hidden_size: int
  reverse: bool = False
  dtype: str = "float32"
  lstm_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, seq_lengths: jax.Array | None = None, *,
               decode: bool = False) -> tuple[Carry, jax.Array]:
    impl = resolve_lstm_impl(self.lstm_impl)
    dtype = jnp.dtype(self.dtype)
    kernel_init = nn.with_logical_partitioning(nn.initializers.glorot_uniform(), ("embed", "mlp"))
    bias_init = nn.with_logical_partitioning(_forget_bias_init, ("mlp",))
    cell = LSTMRecurrence(self.hidden_size, self.dtype, name="cell")
    if impl == "fused" and not decode:
      return self._fused(_DenseParams(4 * self.hidden_size, kernel_init, bias_init, name="input"), cell, x,
                         seq_lengths)
    gates_x = nn.Dense(4 * self.hidden_size, dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init,
                       bias_init=bias_init, name="input")(x)  # (B, T, 4H)
    rnn = nn.RNN(cell, name="rnn")
    if not decode:
      return rnn(gates_x, seq_lengths=seq_lengths, return_carry=True, reverse=self.reverse, keep_order=True)
    if self.reverse or seq_lengths is not None:
      raise ValueError("decode=True continues one unpadded left-to-right sequence: no reverse, no seq_lengths.")
    initialized = self.has_variable("cache", "c")
    shape = (*x.shape[:-2], self.hidden_size)
    c = self.variable("cache", "c", jnp.zeros, shape, jnp.float32)
    h = self.variable("cache", "h", jnp.zeros, shape, jnp.float32)
    carry, out = rnn(gates_x, initial_carry=(c.value, h.value), return_carry=True)
    if initialized:
      c.value, h.value = carry
    return carry, out

  def _fused(self, dense: _DenseParams, cell: LSTMRecurrence, x: jax.Array,
             seq_lengths: jax.Array | None) -> tuple[Carry, jax.Array]:
    """The non-decoding call through `lstm_kernels.lstm_layer`, time-major inside."""
    *batch, steps, features = x.shape
    x = x.reshape(-1, steps, features)  # (B, T, D)
    if seq_lengths is None:
      last = jnp.full(x.shape[:1], steps - 1, jnp.int32)
    else:
      seq_lengths = seq_lengths.reshape(-1)
      last = seq_lengths.astype(jnp.int32) - 1
      last = jnp.clip(jnp.where(last < 0, last + steps, last), 0, steps - 1)  # Indexed as nn.RNN's gather does.
    if self.reverse:  # Padding stays at the end.
      x = nn.recurrent.flip_sequences(x, seq_lengths, num_batch_dims=1, time_major=False)
    w_x, b = dense(features)
    c, h, h_all = lstm_kernels.lstm_layer(jnp.swapaxes(x, 0, 1), w_x, b, cell.recurrent_kernel, last,
                                          jnp.dtype(self.dtype))  # (B, H), (B, H), (T, B, H)
    out = jnp.swapaxes(h_all, 0, 1)  # (B, T, H)
    if self.reverse:
      out = nn.recurrent.flip_sequences(out, seq_lengths, num_batch_dims=1, time_major=False)
    shape = (*batch, self.hidden_size)
    return (c.reshape(shape), h.reshape(shape)), out.reshape(*batch, steps, self.hidden_size)


def _embed_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """U(-0.05, 0.05), Keras' Embedding default."""
  return jax.random.uniform(key, shape, dtype, -0.05, 0.05)


def _embed(vocab_size: int, features: int, dtype: Any) -> nn.Embed:
  return nn.Embed(vocab_size, features, dtype=dtype, param_dtype=jnp.float32, name="embed",
                  embedding_init=nn.with_logical_partitioning(_embed_init, ("vocab", "embed")))


def _head(features: int, names: tuple[str | None, str | None], dtype: Any) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name="head",
                  kernel_init=nn.with_logical_partitioning(nn.initializers.glorot_uniform(), names),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[1:]))


@MODELS.register("lstm_classifier")
class LSTMClassifier(nn.Module):
  """Embedding -> LSTM layers -> Dense on the state at each sequence's last real token (PAD = 0, right-padded).

  The defaults are the classic Embedding(10000, 32) -> LSTM(128) -> Dense(num_outputs) recipe. A bidirectional
  layer concatenates both directions; its backward half starts at the last real token.
  """

  num_outputs: int
  vocab_size: int = 10000
  embed_dim: int = 32
  hidden_size: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  dropout: float = 0.0  # On the embeddings, between layers and before the head.
  dtype: str = "float32"
  lstm_impl: str = "auto"  # See `LSTM`.

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    drop = Dropout(self.dropout, deterministic=not train)
    # An all-PAD row gets length 1 so its gather stays in range; its output is meaningless but finite.
    lengths = jnp.maximum((x != 0).sum(-1), 1).astype(jnp.int32)  # (B,)
    h = drop(_embed(self.vocab_size, self.embed_dim, dtype)(x))  # (B, T, E)
    layer = functools.partial(LSTM, self.hidden_size, dtype=self.dtype, lstm_impl=self.lstm_impl)
    for i in range(self.num_layers):
      if i:
        h = drop(h)
      (_, last), out = layer(name=f"lstm_{i}")(h, lengths)  # (B, T, H)
      if self.bidirectional:
        (_, first), out_bwd = layer(reverse=True, name=f"lstm_{i}_bwd")(h, lengths)
        out = jnp.concatenate([out, out_bwd], axis=-1)  # (B, T, 2H)
        last = jnp.concatenate([last, first], axis=-1)  # (B, 2H)
      h = out
    last = drop(last.astype(dtype))
    return _head(self.num_outputs, ("embed", None), dtype)(last).astype(jnp.float32)  # (B, num_outputs)


@MODELS.register("lstm_lm")
class LSTMLanguageModel(nn.Module):
  """Embedding -> LSTM layers -> Dense over the vocabulary: logits (B, T, num_outputs) for the next token.

  With `decode=True` each layer's carry lives in the 'cache' collection (see `model_lib.generate`).
  """

  num_outputs: int
  vocab_size: int
  embed_dim: int = 128
  hidden_size: int = 256
  num_layers: int = 1
  dropout: float = 0.0  # On the embeddings, between layers and before the head.
  dtype: str = "float32"
  lstm_impl: str = "auto"  # See `LSTM`.

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False, decode: bool = False) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    drop = Dropout(self.dropout, deterministic=not train)
    h = _embed(self.vocab_size, self.embed_dim, dtype)(x)  # (B, T, E)
    for i in range(self.num_layers):
      layer = LSTM(self.hidden_size, dtype=self.dtype, lstm_impl=self.lstm_impl, name=f"lstm_{i}")
      _, h = layer(drop(h), decode=decode)  # (B, T, H)
    h = drop(h.astype(dtype))
    return _head(self.num_outputs, ("embed", "vocab"), dtype)(h).astype(jnp.float32)  # (B, T, V)
