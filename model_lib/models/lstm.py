"""LSTMs over tokens: a sequence classifier (optionally stacked and bidirectional) and a language model.

The input projection of every timestep is one matmul before the scan; the scan only does h @ W_h:
  z = x W_x + b + h W_h,  i, f, g, o = split(z),  c' = σ(f) c + σ(i) tanh(g),  h' = σ(o) tanh(c').
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

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

  @nn.compact
  def __call__(self, carry: Carry, gates_x: jax.Array) -> tuple[Carry, jax.Array]:
    c, h = carry
    dtype = jnp.dtype(self.dtype)
    w_h = self.param("recurrent_kernel", nn.with_logical_partitioning(nn.initializers.orthogonal(), (None, "mlp")),
                     (self.hidden_size, 4 * self.hidden_size), jnp.float32)
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


class LSTM(nn.Module):
  """One LSTM layer over (B, T, D) -> (final carry, outputs (B, T, H)).

  With `seq_lengths` (B,) the final carry is the state at each sequence's last real token, and `reverse=True`
  starts at that token (padding stays at the end; outputs come back in input order). With `decode=True` the carry
  lives in the 'cache' collection, so consecutive calls continue one sequence.
  """

  hidden_size: int
  reverse: bool = False
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, seq_lengths: jax.Array | None = None, *,
               decode: bool = False) -> tuple[Carry, jax.Array]:
    dtype = jnp.dtype(self.dtype)
    gates_x = nn.Dense(4 * self.hidden_size, dtype=dtype, param_dtype=jnp.float32, name="input",
                       kernel_init=nn.with_logical_partitioning(nn.initializers.glorot_uniform(), ("embed", "mlp")),
                       bias_init=nn.with_logical_partitioning(_forget_bias_init, ("mlp",)))(x)  # (B, T, 4H)
    rnn = nn.RNN(LSTMRecurrence(self.hidden_size, self.dtype, name="cell"), name="rnn")
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

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    drop = nn.Dropout(self.dropout, deterministic=not train)
    # An all-PAD row gets length 1 so its gather stays in range; its output is meaningless but finite.
    lengths = jnp.maximum((x != 0).sum(-1), 1).astype(jnp.int32)  # (B,)
    h = drop(_embed(self.vocab_size, self.embed_dim, dtype)(x))  # (B, T, E)
    for i in range(self.num_layers):
      if i:
        h = drop(h)
      (_, last), out = LSTM(self.hidden_size, dtype=self.dtype, name=f"lstm_{i}")(h, lengths)  # (B, T, H)
      if self.bidirectional:
        (_, first), out_bwd = LSTM(self.hidden_size, reverse=True, dtype=self.dtype, name=f"lstm_{i}_bwd")(h, lengths)
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

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False, decode: bool = False) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    drop = nn.Dropout(self.dropout, deterministic=not train)
    h = _embed(self.vocab_size, self.embed_dim, dtype)(x)  # (B, T, E)
    for i in range(self.num_layers):
      _, h = LSTM(self.hidden_size, dtype=self.dtype, name=f"lstm_{i}")(drop(h), decode=decode)  # (B, T, H)
    h = drop(h.astype(dtype))
    return _head(self.num_outputs, ("embed", "vocab"), dtype)(h).astype(jnp.float32)  # (B, T, V)
