"""The CPU paths (attention_impl / layer_impl "explicit") against NumPy and the reference paths: values and grads."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_lib.models import attention_kernels as ak
from model_lib.models.attention import MultiHeadAttention, reference_attention, resolve_attention_impl
from model_lib.models.transformer import BERT, GPT, resolve_layer_impl
from model_lib.models.vit import ViT

V = 24
SMALL = {"num_layers": 1, "num_heads": 2, "embed_dim": 16, "mlp_dim": 32}


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def _normal(shape, seed, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def _numpy_attention(q, k, v, keep):
  """softmax(QK^T/sqrt(d)) V in float64 on heads-major (B, N, T, H) arrays; `keep` broadcasts to (B, N, T, S)."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  logits = np.where(keep, np.einsum("bnth,bnsh->bnts", q, k) / np.sqrt(q.shape[-1]), -np.inf)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  return np.einsum("bnts,bnsh->bnth", w / w.sum(-1, keepdims=True), v)


def _assert_trees_close(got, want, rtol=2e-5):
  """Leafwise |got - want| <= rtol * max|want|, floored at 1% of the tree's largest entry (key-bias grads are ~0)."""
  floor = 1e-2 * max(float(np.max(np.abs(b))) for b in jax.tree.leaves(want))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
    scale = max(float(np.max(np.abs(b))), floor)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("t,causal,padded", [(9, False, False), (9, False, True), (70, True, False),
                                             (12, True, True)])
def test_kernel_matches_numpy_and_reference_grads(t, causal, padded):
  b, n, h = 2, 2, 8
  q, k, v = (_normal((b, n, t, h), i) for i in range(3))
  lengths = np.array([t, t // 2 + 1])
  mask = jnp.asarray(np.arange(t)[None, :] < lengths[:, None])[:, None, None, :] if padded else None
  keep = np.ones((1, 1, t, t), bool)
  if causal:
    keep = keep & np.tril(np.ones((t, t), bool))
  if padded:
    keep = keep & np.asarray(mask)
  if causal and not padded:
    assert len(ak.causal_blocks(t)) > 1  # The block-skipping path is the one under test.
  np.testing.assert_allclose(ak.attention(q, k, v, mask, causal), _numpy_attention(q, k, v, keep), atol=2e-6)

  heads = lambda a: jnp.swapaxes(a, 1, 2)
  cot = _normal((b, n, t, h), 9)
  loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v) * cot)
  got = jax.jit(jax.grad(loss(lambda q, k, v: ak.attention(q, k, v, mask, causal)), (0, 1, 2)))(q, k, v)
  ref = lambda q, k, v: heads(reference_attention(heads(q), heads(k), heads(v), mask, causal)[0])
  _assert_trees_close(got, jax.jit(jax.grad(loss(ref), (0, 1, 2)))(q, k, v))


def test_layer_norm_and_gelu_match_flax():
  x, scale, bias = _normal((3, 5, 16), 0, 3.0) + 1.0, _normal((16,), 1), _normal((16,), 2)
  cot = _normal((3, 5, 16), 3)
  flax_ln = lambda x, s, b: nn.LayerNorm(1e-5).apply({"params": {"scale": s, "bias": b}}, x)
  loss = lambda f: lambda *args: jnp.sum(f(*args) * cot)
  np.testing.assert_allclose(ak.layer_norm(x, scale, bias, 1e-5), flax_ln(x, scale, bias), atol=2e-6)
  _assert_trees_close(jax.grad(loss(lambda *a: ak.layer_norm(*a, 1e-5)), (0, 1, 2))(x, scale, bias),
                      jax.grad(loss(flax_ln), (0, 1, 2))(x, scale, bias))
  for approximate in (False, True):
    gelu = lambda x: ak.gelu(x, approximate)
    want = lambda x: jax.nn.gelu(x, approximate=approximate)
    np.testing.assert_allclose(gelu(x), want(x), atol=2e-6)
    np.testing.assert_allclose(jax.grad(loss(gelu))(x), jax.grad(loss(want))(x), atol=2e-6)


def _random_params(model, *args):
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *args)["params"])
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.3, jnp.float32), shapes)


def _assert_same_values_and_grads(model, x):
  """`model` (explicit kernels) vs its attention_impl="reference", layer_impl="flax" clone: outputs and grads."""
  ref = model.clone(attention_impl="reference", layer_impl="flax")
  params = _random_params(ref, x)
  boxed = [jax.eval_shape(m.init, jax.random.key(0), x)["params"] for m in (model, ref)]
  assert jax.tree.structure(boxed[0]) == jax.tree.structure(boxed[1])  # Same names, shapes and logical axes.
  assert jax.tree.map(lambda a: (a.shape, a.dtype), boxed[0]) == jax.tree.map(lambda a: (a.shape, a.dtype), boxed[1])

  def value_and_grad(m):
    def loss(p):
      y = m.apply({"params": p}, x)
      return jnp.sum(jnp.sin(y)), y
    return jax.value_and_grad(loss, has_aux=True)(params)

  (_, got), got_grads = jax.jit(lambda: value_and_grad(model))()
  (_, want), want_grads = jax.jit(lambda: value_and_grad(ref))()
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
  _assert_trees_close(got_grads, want_grads)


@pytest.mark.parametrize("causal,padded", [(False, True), (True, False), (True, True)])
def test_multi_head_attention_grads_wrt_inputs_and_params(causal, padded):
  t, d = 40, 16
  x = _normal((2, t, d), 4)
  mask = jnp.asarray(np.arange(t)[None, :] < np.array([t, 9])[:, None])[:, None, None, :] if padded else None
  module = MultiHeadAttention(2, attention_impl="explicit")
  ref = module.clone(attention_impl="reference")
  params = _random_params(ref, x)
  cot = _normal((2, t, d), 5)
  loss = lambda m: lambda p, x: jnp.sum(m.apply({"params": p}, x, mask=mask, causal=causal) * cot)
  got = jax.jit(jax.grad(loss(module), (0, 1)))(params, x)
  want = jax.jit(jax.grad(loss(ref), (0, 1)))(params, x)
  _assert_trees_close(got, want)


def test_gpt_tied_embeddings_match_reference():
  x = jnp.asarray(np.random.default_rng(0).integers(0, V, (2, 64)), jnp.int32)  # 64 tokens: two causal blocks.
  _assert_same_values_and_grads(GPT(num_outputs=V, vocab_size=V, max_len=64, attention_impl="explicit",
                                    layer_impl="explicit", tie_embeddings=True, **SMALL), x)


def test_bert_padding_mask_matches_reference():
  x = np.random.default_rng(0).integers(1, V, (2, 10)).astype(np.int32)
  x[1, 6:] = 0  # Padding: masked keys.
  model = BERT(num_outputs=V, vocab_size=V, max_len=16, dropout=0.0, head="mlm",
               attention_impl="explicit", layer_impl="explicit", **SMALL)
  _assert_same_values_and_grads(model, jnp.asarray(x))


def test_vit_matches_reference():
  x = _normal((2, 8, 8, 3), 6)
  model = ViT(num_outputs=5, image_size=8, patch_size=2, attention_impl="explicit", layer_impl="explicit", **SMALL)
  ref = model.clone(attention_impl="reference", layer_impl="flax")
  params = _random_params(ref, x)
  params["head"]["kernel"] = _normal(params["head"]["kernel"].shape, 7)  # Zero-initialised: would hide the blocks.
  loss = lambda m: lambda p: jnp.sum(jnp.sin(m.apply({"params": p}, x)))
  np.testing.assert_allclose(*(jax.jit(m.apply)({"params": params}, x) for m in (model, ref)), atol=2e-5)
  _assert_trees_close(*(jax.jit(jax.grad(loss(m)))(params) for m in (model, ref)))


def test_explicit_gpt_decodes_with_kv_cache():
  model = GPT(num_outputs=V, vocab_size=V, max_len=16, attention_impl="explicit", **SMALL)
  seq = jnp.asarray(np.random.default_rng(2).integers(0, V, (2, 8)), jnp.int32)
  params = _random_params(model, seq)
  full = jax.jit(model.apply)({"params": params}, seq)
  cache = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((2, 16), jnp.int32), decode=True)["cache"])()
  step = jax.jit(lambda cache, tokens: model.apply({"params": params, "cache": cache}, tokens, decode=True,
                                                   mutable=["cache"]))
  logits, upd = step(cache, seq[:, :3])
  np.testing.assert_allclose(logits, full[:, :3], atol=1e-5)
  for t in range(3, 6):
    logits, upd = step(upd["cache"], seq[:, t:t + 1])
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)


@pytest.mark.parametrize("backend,attention,layer", [("cpu", "explicit", "explicit"), ("gpu", "dot_product", "flax"),
                                                     ("tpu", "dot_product", "flax")])
def test_auto_resolves_per_backend(monkeypatch, backend, attention, layer):
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert resolve_attention_impl("auto") == attention
  assert resolve_attention_impl("auto", implementation="xla") == "dot_product"  # A pinned backend kernel wins.
  assert resolve_attention_impl("reference") == "reference"
  assert resolve_layer_impl("auto") == layer
  calls = []
  real = jax.nn.dot_product_attention
  monkeypatch.setattr(jax.nn, "dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
  x = _normal((1, 6, 8), 8)
  module = MultiHeadAttention(2)  # attention_impl="auto" by default.
  module.apply(module.init(jax.random.key(0), x), x, causal=True)
  assert bool(calls) == (attention == "dot_product")
  norms = []
  real_norm = ak.layer_norm
  monkeypatch.setattr(ak, "layer_norm", lambda *a: norms.append(1) or real_norm(*a))
  params = jax.eval_shape(GPT(num_outputs=V, vocab_size=V, max_len=8, **SMALL).init, jax.random.key(0),
                          jnp.zeros((1, 8), jnp.int32))["params"]
  assert bool(norms) == (layer == "explicit")
  assert set(params["block_0"]["ln1"]) == {"scale", "bias"}


def test_unknown_impls_name_the_config_key():
  x = jnp.zeros((1, 4), jnp.int32)
  with pytest.raises(ValueError, match=r"model\.attention_impl.*explicit"):
    GPT(num_outputs=V, vocab_size=V, max_len=8, attention_impl="flash", **SMALL).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"model\.layer_impl.*explicit"):
    GPT(num_outputs=V, vocab_size=V, max_len=8, layer_impl="fused", **SMALL).init(jax.random.key(0), x)
