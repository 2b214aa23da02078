"""Multi-head self-attention shared by GPT, BERT and ViT: einsum projections, two kernels, optional KV cache."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from model_lib.models import attention_kernels
from model_lib.models.layers import resolve_impl

IMPLS = ("auto", "explicit", "dot_product", "reference")
Init = Callable[..., Any]


def resolve_attention_impl(impl: str, implementation: str | None = None) -> str:
  """The attention path `impl` names: "auto" is "explicit" on CPU (unless `implementation` is set), else "dot_product".

  On XLA:CPU the explicit heads-major kernel with its hand-written backward trains fastest; on GPU/TPU
  jax.nn.dot_product_attention dispatches to the fused (e.g. cuDNN) kernels.
  """
  if impl == "auto" and implementation is not None:  # A requested backend kernel needs dot_product_attention.
    return "dot_product"
  return resolve_impl("attention_impl", impl, IMPLS, {"cpu": "explicit"}, "dot_product")


def reference_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                        causal: bool = False) -> tuple[jax.Array, jax.Array]:
  """softmax(QK^T/sqrt(d) + masks) V; q (B, T, N, H), k/v (B, S, N, H), mask broadcastable to (B, N, T, S).

  Returns the output (B, T, N, H) and the attention weights (B, N, T, S) in float32.
  """
  logits = jnp.einsum("btnh,bsnh->bnts", q, k).astype(jnp.float32) / np.sqrt(q.shape[-1])  # (B, N, T, S)
  keep = jnp.ones(logits.shape, bool)
  if causal:
    t, s = logits.shape[-2:]
    keep = keep & jnp.tril(jnp.ones((t, s), bool))[None, None]
  if mask is not None:
    keep = keep & mask
  # The same finite fill as jax.nn.dot_product_attention, so fully masked rows agree (uniform) instead of NaN.
  logits = jnp.where(keep, logits, attention_kernels.MASK_VALUE)
  weights = jax.nn.softmax(logits, axis=-1)  # (B, N, T, S)
  out = jnp.einsum("bnts,bsnh->btnh", weights.astype(v.dtype), v)  # (B, T, N, H)
  return out, weights


class MultiHeadAttention(nn.Module):
  """Self-attention with (D, N, H) query/key/value and (N, H, D) output kernels.

  `attention_impl`: "explicit" runs `attention_kernels.attention` (heads-major, stored softmax, hand-written
  backward, causal block skipping); "dot_product" calls `jax.nn.dot_product_attention` (backend `implementation`:
  None, 'xla' or 'cudnn'); "reference" computes the softmax explicitly and sows the weights as
  `intermediates/attention_weights` (apply with `mutable=['intermediates']` to read them); "auto" (default) is
  "explicit" on CPU and "dot_product" elsewhere. All share one parameter tree.
  With `decode=True` keys and values go to the 'cache' collection, sized by the sequence length seen at init;
  `cache_index` is the position of the first input token.
  """

  num_heads: int
  head_dim: int | None = None  # Default: D // num_heads.
  use_bias: bool = True
  attention_impl: str = "auto"
  implementation: str | None = None
  dtype: str = "float32"
  kernel_init: Init = nn.initializers.normal(0.02)
  out_kernel_init: Init | None = None  # Default: kernel_init.

  @nn.compact
  def __call__(self, x: jax.Array, *, mask: jax.Array | None = None, causal: bool = False, decode: bool = False,
               cache_index: jax.Array | None = None) -> jax.Array:
    impl = resolve_attention_impl(self.attention_impl, self.implementation)
    dtype = jnp.dtype(self.dtype)
    d = x.shape[-1]
    n = self.num_heads
    if self.head_dim is None and d % n:
      raise ValueError(f"embed_dim {d} is not divisible by num_heads {n}.")
    h = self.head_dim or d // n
    x = x.astype(dtype)

    def project(name: str) -> jax.Array:
      kernel = self.param(name, nn.with_logical_partitioning(self.kernel_init, ("embed", "heads", "kv")), (d, n, h),
                          jnp.float32)
      y = jnp.einsum("btd,dnh->btnh", x, kernel.astype(dtype))  # (B, T, N, H)
      if self.use_bias:
        bias = self.param(f"{name}_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("heads", "kv")),
                          (n, h), jnp.float32)
        y = y + bias.astype(dtype)[None, None]
      return y

    q, k, v = project("query"), project("key"), project("value")
    if decode:
      k, v, mask, causal = self._update_cache(k, v, mask, causal, cache_index)
    if impl == "reference":
      out, weights = reference_attention(q, k, v, mask, causal)
      self.sow("intermediates", "attention_weights", weights)
    elif impl == "explicit":
      heads = lambda a: jnp.swapaxes(a, 1, 2)  # (B, T, N, H) <-> (B, N, T, H)
      out = heads(attention_kernels.attention(heads(q), heads(k), heads(v), mask, causal))
    else:
      out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal, implementation=self.implementation)
    out_init = self.out_kernel_init or self.kernel_init
    out_kernel = self.param("out", nn.with_logical_partitioning(out_init, ("heads", "kv", "embed")), (n, h, d),
                            jnp.float32)
    y = jnp.einsum("btnh,nhd->btd", out.astype(dtype), out_kernel.astype(dtype))  # (B, T, D)
    if self.use_bias:
      y = y + self.param("out_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), (d,),
                         jnp.float32).astype(dtype)[None, None]
    return y

  def _update_cache(self, k: jax.Array, v: jax.Array, mask: jax.Array | None, causal: bool,
                    cache_index: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array | None, bool]:
    """Writes k/v at `cache_index` and returns the whole cache with the mask of positions filled so far."""
    initialized = self.has_variable("cache", "key")
    cached_k = self.variable("cache", "key", jnp.zeros, k.shape, k.dtype)  # (B, S_max, N, H)
    cached_v = self.variable("cache", "value", jnp.zeros, v.shape, v.dtype)
    if not initialized:  # Init only sizes the cache; attend as in training.
      return k, v, mask, causal
    if cache_index is None:
      raise ValueError("decode=True needs cache_index (the position of the first input token).")
    t, s = k.shape[1], cached_k.value.shape[1]
    zero = jnp.zeros((), jnp.int32)
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (zero, cache_index, zero, zero))
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (zero, cache_index, zero, zero))
    # Query i sits at position cache_index + i and sees cache slots 0..cache_index + i; later slots are empty.
    visible = jnp.arange(s)[None, :] <= (cache_index + jnp.arange(t))[:, None]  # (T, S_max)
    visible = visible[None, None]
    mask = visible if mask is None else mask & visible
    return cached_k.value, cached_v.value, mask, False
