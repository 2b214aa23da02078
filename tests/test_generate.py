"""Decoding: KV cache / carried state against full recomputation, sampling rules, determinism, one compile."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_lib import generate as gen
from model_lib.models.lstm import LSTMLanguageModel
from model_lib.models.transformer import GPT

V, MAX_LEN = 24, 16
MODELS = {
    "gpt": GPT(num_outputs=V, vocab_size=V, num_layers=2, num_heads=2, embed_dim=16, mlp_dim=32, max_len=MAX_LEN),
    "lstm_lm": LSTMLanguageModel(num_outputs=V, vocab_size=V, embed_dim=8, hidden_size=16, num_layers=2),
}


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def _random_params(model, scale=0.3):
  """Normal(0, scale) parameters drawn by NumPy on eval_shape's shapes: nothing to compile."""
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"])
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * scale, jnp.float32), shapes)


def _tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(1, V, shape), jnp.int32)


@pytest.fixture(scope="module", params=sorted(MODELS))
def lm(request):
  model = MODELS[request.param]
  return model, _random_params(model)


def test_cached_decoding_matches_full_recompute(lm):
  model, params = lm
  seq = _tokens((2, 12))
  # The full forward pass over the final sequence gives, at every position, the logits of recomputing that prefix
  # (causality, tested in test_transformer); the cache must reproduce them token by token.
  full = jax.jit(model.apply)({"params": params}, seq)  # (B, 12, V)
  cache = gen.init_cache(model, 2)
  logits, cache = gen.prefill(model, params, cache, seq[:, :3])  # A 3-token chunk, then a 2-token chunk.
  np.testing.assert_allclose(logits, full[:, 2], atol=1e-5)
  logits, cache = gen.prefill(model, params, cache, seq[:, 3:5])
  np.testing.assert_allclose(logits, full[:, 4], atol=1e-5)
  step = jax.jit(lambda cache, tok: model.apply({"params": params, "cache": cache}, tok, decode=True,
                                                mutable=["cache"]))
  for t in range(5, 12):
    logits, updates = step(cache, seq[:, t:t + 1])
    cache = updates["cache"]
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)


def test_greedy_is_argmax_of_full_sequence_logits(lm):
  model, params = lm
  prompt = _tokens((2, 3))  # The shapes of the other tests: their compiled programs are reused.
  out = gen.generate(model, params, prompt, 9, jax.random.key(0), greedy=True)
  chex.assert_shape(out, (2, 12))
  np.testing.assert_array_equal(out[:, :3], prompt)
  full = jax.jit(model.apply)({"params": params}, out)
  np.testing.assert_array_equal(out[:, 3:], full[:, 2:-1].argmax(-1))
  # top_k=1 keeps only the argmax, whatever the temperature and key.
  np.testing.assert_array_equal(gen.generate(model, params, prompt, 9, jax.random.key(5), temperature=2.0, top_k=1),
                                out)


def test_sampling_is_deterministic_given_the_key(lm):
  model, params = lm
  prompt = _tokens((2, 3))
  a = gen.generate(model, params, prompt, 8, jax.random.key(7), temperature=1.5)
  np.testing.assert_array_equal(gen.generate(model, params, prompt, 8, jax.random.key(7), temperature=1.5), a)
  assert not np.array_equal(gen.generate(model, params, prompt, 8, jax.random.key(8), temperature=1.5), a)


def test_decode_step_compiles_once_per_generation():
  model = GPT(num_outputs=V, vocab_size=V, num_layers=1, num_heads=2, embed_dim=8, mlp_dim=16, max_len=MAX_LEN)
  params = _random_params(model)
  before = gen.decode_step._cache_size()
  gen.generate(model, params, _tokens((2, 3)), 9, jax.random.key(0), top_k=5)
  assert gen.decode_step._cache_size() == before + 1
  # Another prompt length, length, temperature and key: the cache is fixed-size, so still no new decode compile.
  gen.generate(model, params, _tokens((2, 5), seed=1), 4, jax.random.key(1), temperature=0.7, top_k=5)
  assert gen.decode_step._cache_size() == before + 1


def test_top_k_samples_stay_in_the_top_k():
  logits = np.random.default_rng(0).normal(size=(4, V)).astype(np.float32)
  draws = gen.sample_logits(jnp.asarray(np.tile(logits, (200, 1))), jax.random.key(0), 1.0, top_k=3)  # (800,)
  draws = np.asarray(draws).reshape(200, 4)
  top3 = np.argsort(-logits, axis=-1)[:, :3]
  for b in range(4):
    assert set(draws[:, b]) == set(top3[b])  # Only the top 3, and each of them.


def test_rejects_sequences_longer_than_max_len():
  model = MODELS["gpt"]
  with pytest.raises(ValueError, match="max_len"):
    gen.generate(model, None, _tokens((1, 10)), MAX_LEN, jax.random.key(0))
