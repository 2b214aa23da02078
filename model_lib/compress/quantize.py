"""int8 weight quantization: post-training (per-channel symmetric) and quantization-aware training (fake quant).

A kernel w with output channels on its last axis gets one scale per output channel,
s_c = max |w[..., c]| / 127, q = clip(round(w / s), -127, 127) as int8, and w ≈ q * s; the round-trip
error is at most s_c / 2 per element. QAT trains through `fake_quant` (forward: the dequantized
weight; backward: the identity, the straight-through estimator).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

QMAX = 127


def channel_scales(w: jax.Array) -> jax.Array:
  """Per-output-channel scales (shape broadcastable to w): max |w| over all but the last axis / 127."""
  amax = jnp.max(jnp.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True)
  return jnp.where(amax > 0, amax / QMAX, 1.0).astype(jnp.float32)


def quantize(w: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(int8 values, float32 scales) of a kernel."""
  scale = channel_scales(w)
  q = jnp.clip(jnp.round(w / scale), -QMAX, QMAX).astype(jnp.int8)
  return q, scale


def dequantize(q: jax.Array, scale: jax.Array) -> jax.Array:
  return q.astype(jnp.float32) * scale


def fake_quant(w: jax.Array) -> jax.Array:
  """Forward: dequantize(quantize(w)); gradient: identity (straight-through)."""
  return w + jax.lax.stop_gradient(dequantize(*quantize(w)) - w)


def _is_kernel(p: jax.Array) -> bool:
  return p.ndim >= 2


def fake_quant_params(params: Any) -> Any:
  """Fake-quantizes every kernel (ndim >= 2); biases and norms stay float."""
  return jax.tree.map(lambda p: fake_quant(p) if _is_kernel(p) else p, params)


def quantize_params(params: Any) -> Any:
  """Post-training quantization: kernels -> {'int8': q, 'scale': s}; other leaves unchanged."""
  return jax.tree.map(lambda p: {"int8": quantize(p)[0], "scale": quantize(p)[1]} if _is_kernel(p) else p, params)


def _is_quantized(x: Any) -> bool:
  return isinstance(x, dict) and set(x) == {"int8", "scale"}


def dequantize_params(qparams: Any) -> Any:
  """Float params back from `quantize_params` (what an int8-weight model computes with)."""
  return jax.tree.map(lambda x: dequantize(x["int8"], x["scale"]) if _is_quantized(x) else x, qparams,
                      is_leaf=_is_quantized)


def serialized_bytes(tree: Any) -> int:
  """Bytes of all array leaves (int8 weights count 1 byte each)."""
  return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))
