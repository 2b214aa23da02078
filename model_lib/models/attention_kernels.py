"""Pure functions behind the transformer layers on XLA:CPU: attention with a hand-written backward, LayerNorm, GELU.

Same math as jax.nn.dot_product_attention / nn.LayerNorm / nn.gelu, arranged for XLA:CPU: attention runs on
heads-major (B, N, T, H) operands so every batched matmul has leading batch dims, scales q instead of the (T, S)
logits, keeps the softmax for a backward written out (dV = P^T dO, dS = P (dP - rowsum(dO O)), dQ, dK), and for
causal attention skips the key blocks wholly in the future (the batched matmuls are XLA:CPU's slowest op per
FLOP); LayerNorm's backward is two fused row reductions; exact GELU goes through erf rather than erfc.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# The same finite fill as jax.nn.dot_product_attention, so fully masked rows agree (uniform) instead of NaN.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)
# Causal query blocks: XLA:CPU's batched matmuls lose more to small shapes than skipping saves below 32 rows.
MIN_CAUSAL_BLOCK = 32
MAX_CAUSAL_BLOCKS = 4


def _logits_mask(t: int, s: int, mask: jax.Array | None, offset: int | None) -> jax.Array | None:
  """Boolean keep-mask broadcastable to (B, N, t, s); `offset` (causal) is the first query's position."""
  keep = None
  if offset is not None:
    rows = jax.lax.broadcasted_iota(jnp.int32, (1, 1, t, s), 2) + offset
    keep = rows >= jax.lax.broadcasted_iota(jnp.int32, (1, 1, t, s), 3)
  if mask is not None:
    keep = mask if keep is None else keep & mask
  return keep


def _probs(qs: jax.Array, k: jax.Array, mask: jax.Array | None, offset: int | None) -> jax.Array:
  """softmax(qs k^T + masks) in float32, (B, N, T, S), for the pre-scaled queries `qs`."""
  logits = jnp.einsum("bnth,bnsh->bnts", qs, k, preferred_element_type=jnp.float32)
  keep = _logits_mask(qs.shape[2], k.shape[2], mask, offset)
  if keep is not None:
    logits = jnp.where(keep, logits, MASK_VALUE)
  e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  return e / jnp.sum(e, axis=-1, keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _attention(q, k, v, mask, offset, scale):
  return _attention_fwd(q, k, v, mask, offset, scale)[0]


def _attention_fwd(q, k, v, mask, offset, scale):
  qs = q * jnp.asarray(scale, q.dtype)  # Scaling q costs T x H multiplies where scaling the logits costs T x S.
  p = _probs(qs, k, mask, offset)
  out = jnp.einsum("bnts,bnsh->bnth", p.astype(v.dtype), v)
  return out, (qs, k, v, p, out, mask)


def _attention_bwd(offset, scale, res, g):
  del offset
  qs, k, v, p, out, mask = res
  dv = jnp.einsum("bnts,bnth->bnsh", p.astype(g.dtype), g)
  dp = jnp.einsum("bnth,bnsh->bnts", g, v, preferred_element_type=jnp.float32)
  # rowsum(dP * P) == rowsum(dO * O): a reduction over H instead of S.
  delta = jnp.sum(g.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
  ds = (p * (dp - delta)).astype(qs.dtype)
  dq = jnp.einsum("bnts,bnsh->bnth", ds, k) * jnp.asarray(scale, qs.dtype)
  dk = jnp.einsum("bnts,bnth->bnsh", ds, qs)
  return dq, dk, dv, None


_attention.defvjp(_attention_fwd, _attention_bwd)


def causal_blocks(t: int) -> list[tuple[int, int]]:
  """Query row ranges for causal attention over `t` tokens: at most MAX_CAUSAL_BLOCKS of >= MIN_CAUSAL_BLOCK rows."""
  n = max(1, min(MAX_CAUSAL_BLOCKS, t // MIN_CAUSAL_BLOCK))
  edges = [round(i * t / n) for i in range(n + 1)]
  return list(zip(edges[:-1], edges[1:]))


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None, causal: bool = False,
              scale: float | None = None) -> jax.Array:
  """softmax(QK^T * scale + masks) V on heads-major (B, N, T, H) inputs; the backward reuses the stored softmax.

  `mask` is boolean, broadcastable to (B, N, T, S); masked logits get jax.nn.dot_product_attention's finite fill.
  `causal` aligns query i with key i (as jax.nn.dot_product_attention). Without a mask, causal attention runs
  per block of query rows against only the keys up to the block's end: the skipped logits are masked anyway.
  """
  scale = 1.0 / float(np.sqrt(q.shape[-1])) if scale is None else float(scale)
  if mask is not None:
    mask = jnp.asarray(mask, bool)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
  t, s = q.shape[2], k.shape[2]
  if not causal:
    return _attention(q, k, v, mask, None, scale)
  if mask is not None or t != s:
    return _attention(q, k, v, mask, 0, scale)
  outs = [_attention(q[:, :, lo:hi], k[:, :, :hi], v[:, :, :hi], None, lo, scale) for lo, hi in causal_blocks(t)]
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x, scale, bias, eps):
  return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_fwd(x, scale, bias, eps):
  # nn.LayerNorm's one-pass variance: both row sums come from one read of x.
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.maximum(jnp.mean(x * x, axis=-1, keepdims=True) - mean * mean, 0.0)
  rstd = jax.lax.rsqrt(var + np.float32(eps))
  xhat = (x - mean) * rstd
  lead = (1,) * (x.ndim - 1)
  y = xhat * scale.reshape(lead + scale.shape) + bias.reshape(lead + bias.shape)
  return y, (xhat, rstd, scale)


def _layer_norm_bwd(eps, res, g):
  del eps
  xhat, rstd, scale = res
  gf = g.astype(jnp.float32)
  axes = tuple(range(g.ndim - 1))
  dscale = jnp.sum(gf * xhat, axis=axes)
  dbias = jnp.sum(gf, axis=axes)
  dxhat = gf * scale.reshape((1,) * (g.ndim - 1) + scale.shape)
  dx = rstd * (dxhat - jnp.mean(dxhat, axis=-1, keepdims=True) - xhat * jnp.mean(dxhat * xhat, axis=-1, keepdims=True))
  return dx, dscale, dbias


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
  """(x - mean) / sqrt(var + eps) * scale + bias over the last axis in float32 (returned as float32)."""
  return _layer_norm(x.astype(jnp.float32), scale.astype(jnp.float32), bias.astype(jnp.float32), float(eps))


def gelu(x: jax.Array, approximate: bool) -> jax.Array:
  """jax.nn.gelu(x, approximate); the exact form via erf, which XLA:CPU evaluates ~2x faster than via erfc."""
  if approximate:
    return jax.nn.gelu(x, approximate=True)
  return x * (0.5 + 0.5 * jax.lax.erf(x * np.array(1 / np.sqrt(2), x.dtype)))
