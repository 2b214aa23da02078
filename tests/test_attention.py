"""Multi-head attention against a NumPy softmax(QK^T/sqrt(d))V with causal and padding masks."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_lib.models.attention import MultiHeadAttention, reference_attention

B, T, D, N = 2, 6, 8, 2


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def _numpy_attention(params, x, causal, lengths):
  """Projections, masked softmax(QK^T/sqrt(d))V and the output projection in float64 NumPy."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  x = np.asarray(x, np.float64)
  q = np.einsum("btd,dnh->btnh", x, p["query"]) + p["query_bias"]
  k = np.einsum("btd,dnh->btnh", x, p["key"]) + p["key_bias"]
  v = np.einsum("btd,dnh->btnh", x, p["value"]) + p["value_bias"]
  logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
  keep = np.ones(logits.shape, bool)
  if causal:
    keep &= np.tril(np.ones((T, T), bool))
  if lengths is not None:
    keep &= (np.arange(T)[None, :] < np.asarray(lengths)[:, None])[:, None, None, :]
  logits = np.where(keep, logits, -np.inf)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  out = np.einsum("bnts,bsnh->btnh", w, v)
  return np.einsum("btnh,nhd->btd", out, p["out"]) + p["out_bias"], w


def _random_params(module, x):
  """Normal(0, 0.3) parameters, biases included (a missing bias term must show), drawn by NumPy."""
  shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), x)["params"])
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.3, jnp.float32), shapes)


def _normal(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("impl,implementation,causal,padded", [
    ("dot_product", None, False, False), ("dot_product", None, True, False), ("dot_product", None, False, True),
    ("dot_product", "xla", True, True), ("reference", None, False, True), ("reference", None, True, True)])
def test_attention_matches_numpy(impl, implementation, causal, padded):
  x = _normal((B, T, D), 2)
  lengths = np.array([T, 3]) if padded else None
  mask = jnp.asarray(np.arange(T)[None, :] < lengths[:, None])[:, None, None, :] if padded else None
  module = MultiHeadAttention(N, attention_impl=impl, implementation=implementation)
  params = _random_params(module, x)
  got = module.apply({"params": params}, x, mask=mask, causal=causal)
  want, _ = _numpy_attention(params, x, causal, lengths)
  chex.assert_shape(got, (B, T, D))
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_reference_path_sows_attention_weights():
  x = _normal((B, T, D), 3)
  lengths = np.array([T, 4])
  mask = jnp.asarray(np.arange(T)[None, :] < lengths[:, None])[:, None, None, :]
  module = MultiHeadAttention(N, attention_impl="reference")
  params = _random_params(module, x)
  _, state = module.apply({"params": params}, x, mask=mask, causal=True, mutable=["intermediates"])
  (weights,) = state["intermediates"]["attention_weights"]
  chex.assert_shape(weights, (B, N, T, T))
  np.testing.assert_allclose(weights, _numpy_attention(params, x, True, lengths)[1], atol=1e-6)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


def test_reference_attention_fully_masked_rows_agree_with_jax():
  q, k, v = (_normal((1, 3, 1, 4), i) for i in range(3))
  mask = jnp.zeros((1, 1, 3, 3), bool)
  ref, _ = reference_attention(q, k, v, mask)
  chex.assert_tree_all_finite(ref)
  np.testing.assert_allclose(ref, jax.nn.dot_product_attention(q, k, v, mask=mask), atol=1e-6)


def test_kernels_are_head_shaped_with_logical_names():
  module = MultiHeadAttention(N)
  boxed = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, T, D)))["params"]
  assert boxed["query"].names == ("embed", "heads", "kv")
  assert boxed["out"].names == ("heads", "kv", "embed")
  chex.assert_shape(boxed["query"].value, (D, N, D // N))
  chex.assert_shape(boxed["out"].value, (N, D // N, D))


def test_unknown_impl_is_rejected():
  with pytest.raises(ValueError, match="attention_impl"):
    MultiHeadAttention(N, attention_impl="flash").init(jax.random.key(0), jnp.zeros((1, T, D)))
