"""Dropout with `nn.Dropout`'s exact masks, drawn by a Threefry-2x32 written out in jnp so XLA fuses it.

JAX lowers Threefry on CPU as a rolled five-iteration while loop (short compiles); for a (128, 512) mask that
loop costs ~350 µs, the same hash as straight-line jnp ~90 µs, fused with the compare and the select into one
elementwise pass. The counters are the partitionable ones `jax.random.bits` uses (a row-major uint64 iota
split in two words), so the bits, and every mask, equal `jax.random.bernoulli`'s: switching never changes a
run's numbers (tested). Keys of other PRNG implementations, the non-partitionable counter layout and masks of
2**32 or more elements take `jax.random.bernoulli` itself.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
  return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry_2x32(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Threefry-2x32 (20 rounds) of counter words (x0, x1) under key (k1, k2), as in JAX's unrolled lowering."""
  ks = (k1, k2, k1 ^ k2 ^ _PARITY)
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = x0 ^ _rotate_left(x1, r)
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _key_words(key: jax.Array) -> jax.Array | None:
  """The two uint32 words of a Threefry key (typed or raw), or None for another PRNG implementation."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(key) if str(jax.random.key_impl(key)) == "threefry2x32" else None
  return key if jax.config.jax_default_prng_impl == "threefry2x32" and key.shape == (2,) else None


def random_bits(key: jax.Array, shape: Sequence[int]) -> jax.Array | None:
  """`jax.random.bits(key, shape)` (uint32) as straight-line jnp, or None where that would not be bit-exact."""
  words = _key_words(key)
  size = math.prod(shape)
  if words is None or not jax.config.jax_threefry_partitionable or size >= 2**32 or not shape:
    return None
  strides = np.cumprod((1, *shape[:0:-1]))[::-1]
  # Per-axis iotas (not a reshaped flat one) keep the counter partitionable when the mask is sharded.
  low = sum(lax.broadcasted_iota(jnp.uint32, tuple(shape), d) * np.uint32(s) for d, s in enumerate(strides))
  b0, b1 = threefry_2x32(words[0], words[1], jnp.zeros(tuple(shape), jnp.uint32), low)
  return b0 ^ b1


def bernoulli(key: jax.Array, p: float, shape: Sequence[int]) -> jax.Array:
  """`jax.random.bernoulli(key, p, shape)`, bit for bit, through `random_bits` where it applies."""
  bits = None if jax.config.jax_enable_x64 else random_bits(key, shape)  # x64: JAX draws float64 uniforms.
  if bits is None:
    return jax.random.bernoulli(key, p, tuple(shape))
  one = np.array(1.0, np.float32).view(np.uint32)
  uniform = lax.bitcast_convert_type((bits >> np.uint32(9)) | one, jnp.float32) - np.float32(1.0)
  return uniform < np.float32(p)


class Dropout(nn.Module):
  """`nn.Dropout` (same fields, same rng stream, same masks) with the fused mask of `bernoulli`."""

  rate: float
  broadcast_dims: Sequence[int] = ()
  deterministic: bool | None = None
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None) -> jax.Array:
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:  # As nn.Dropout: no division by zero, no NaN gradients.
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    rng = self.make_rng(self.rng_collection) if rng is None else rng
    dims = {d % inputs.ndim for d in self.broadcast_dims}
    shape = [1 if d in dims else n for d, n in enumerate(inputs.shape)]
    mask = jnp.broadcast_to(bernoulli(rng, keep_prob, shape), inputs.shape)
    return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
