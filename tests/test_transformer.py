"""GPT and BERT: causality, padding invariance, attention paths, heads, mixed precision, overfitting one batch."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from model_lib import optim
from model_lib.config import base_config
from model_lib.models import build_model
from model_lib.models.transformer import BERT, GPT
from model_lib.train import tasks
from model_lib.train.state import create_train_state
from model_checks import assert_bfloat16_close_to_float32, assert_overfits_one_batch

V, T = 24, 8
SMALL = {"num_layers": 2, "num_heads": 2, "embed_dim": 16, "mlp_dim": 32, "max_len": 16}


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def _random_params(model, *args, scale=0.3):
  """Normal(0, scale) parameters drawn by NumPy on eval_shape's shapes: nothing to compile."""
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *args)["params"])
  rng = np.random.default_rng(1)
  return {"params": jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * scale, jnp.float32), shapes)}


def _tokens(shape, seed=0):
  return np.random.default_rng(seed).integers(1, V, shape).astype(np.int32)


def test_gpt_is_causal():
  model = GPT(num_outputs=V, vocab_size=V, **SMALL)
  x = _tokens((1, T))
  variants = [x]
  for t in (0, 3, T - 1):  # Change token t in one copy each.
    y = x.copy()
    y[0, t] = y[0, t] % (V - 1) + 1
    variants.append(y)
  logits = jax.jit(model.apply)(_random_params(model, x), jnp.asarray(np.concatenate(variants)))  # (4, T, V)
  for i, t in enumerate((0, 3, T - 1), start=1):
    np.testing.assert_array_equal(logits[i, :t], logits[0, :t])
    assert not np.allclose(logits[i, t], logits[0, t])


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_attention_impls_agree(name):
  cls = GPT if name == "gpt" else BERT
  kw = {"head": "none", "dropout": 0.0} if name == "bert" else {}
  x = _tokens((2, T))
  x[1, 5:] = 0
  ref = cls(num_outputs=V, vocab_size=V, attention_impl="reference", **kw, **SMALL)
  params = _random_params(ref, x)
  both = jax.jit(lambda x: (ref.apply(params, x), ref.clone(attention_impl="dot_product").apply(params, x)))
  np.testing.assert_allclose(*both(x), atol=1e-5, rtol=1e-5)


def test_bert_padding_changes_nothing_at_real_positions():
  x = _tokens((2, T))
  x[1, 5:] = 0  # Row 1 has 5 real tokens.
  post = BERT(num_outputs=3, vocab_size=V, post_ln=True, head="classifier", **SMALL)
  pre = post.clone(post_ln=False)
  params = _random_params(pre, x)  # The pre-LN tree is the post-LN tree plus a final LN.

  def outputs(x):  # Encoder states and classifier logits of both variants in one program per input shape.
    return [(m.clone(head="none").apply(params, x), m.apply(params, x)) for m in (post, pre)]

  apply = jax.jit(outputs)
  padded = apply(np.concatenate([x, np.zeros((2, 4), np.int32)], axis=1))
  alone = apply(x[1:, :5])
  for i, (h, logits) in enumerate(apply(x)):
    np.testing.assert_allclose(padded[i][0][:, :T][x != 0], h[x != 0], atol=1e-5)
    np.testing.assert_allclose(h[1, :5], alone[i][0][0], atol=1e-5)
    chex.assert_shape(logits, (2, 3))
    np.testing.assert_allclose(padded[i][1], logits, atol=1e-5)
    np.testing.assert_allclose(logits[1:], alone[i][1], atol=1e-5)


def test_bert_segments():
  model = BERT(num_outputs=V, vocab_size=V, head="none", **SMALL)
  x = jnp.asarray(_tokens((2, T)))
  params = _random_params(model, x)
  apply = jax.jit(lambda x: [model.apply(params, x, segments=s) for s in (None, jnp.zeros_like(x), jnp.ones_like(x))])
  default, zeros, ones = apply(x)
  np.testing.assert_allclose(default, zeros, atol=1e-6)
  assert not np.allclose(ones, zeros, atol=1e-3)


def test_heads_and_tying():
  x = jnp.zeros((1, T), jnp.int32)
  count = lambda m: sum(p.size for p in jax.tree.leaves(jax.eval_shape(m.init, jax.random.key(0), x)))
  tied, untied = GPT(num_outputs=V, vocab_size=V, **SMALL), GPT(num_outputs=V, vocab_size=V, tie_embeddings=False,
                                                                  **SMALL)
  d = SMALL["embed_dim"]
  assert count(untied) - count(tied) == d * V + V
  pooled = BERT(num_outputs=3, vocab_size=V, head="pooler", **SMALL)
  assert count(BERT(num_outputs=3, vocab_size=V, head="classifier", **SMALL)) - count(pooled) == d * 3 + 3
  mlm = BERT(num_outputs=V, vocab_size=V, head="mlm", **SMALL)
  assert count(mlm) - count(pooled) == 2 * d + V  # Transform dense (= pooler's size) + LN + output bias.
  chex.assert_shape(jax.eval_shape(mlm.init_with_output, jax.random.key(0), x)[0], (1, T, V))
  with pytest.raises(ValueError, match="num_outputs == vocab_size"):
    jax.eval_shape(BERT(num_outputs=3, vocab_size=V, head="mlm", **SMALL).init, jax.random.key(0), x)
  with pytest.raises(ValueError, match="tie_embeddings"):
    jax.eval_shape(GPT(num_outputs=3, vocab_size=V, **SMALL).init, jax.random.key(0), x)
  with pytest.raises(ValueError, match="max_len"):
    jax.eval_shape(tied.init, jax.random.key(0), jnp.zeros((1, 17), jnp.int32))


def _lm_batch(shape=(4, T)):
  x = jnp.asarray(_tokens(shape))
  return {"x": x, "y": jnp.roll(x, -1, 1), "weights": jnp.ones(x.shape).at[:, -1].set(0)}


def _mlm_batch(shape=(4, T), mask_id=1):
  y = _tokens(shape)
  masked = np.random.default_rng(2).random(shape) < 0.3
  masked[:, 0] = True  # At least one target per row.
  return {"x": jnp.asarray(np.where(masked, mask_id, y)), "y": jnp.asarray(y),
          "weights": jnp.asarray(masked, jnp.float32)}


ONE_LAYER = {**SMALL, "num_layers": 1}
CASES = {  # name: () -> (model config, batch, task)
    "gpt": lambda: ({"name": "gpt", "num_outputs": V, "vocab_size": V, "dropout": 0.1, **ONE_LAYER}, _lm_batch(),
                    tasks.LanguageModel(V)),
    "bert_mlm": lambda: ({"name": "bert", "num_outputs": V, "vocab_size": V, "head": "mlm", "post_ln": False,
                          **ONE_LAYER}, _mlm_batch(), tasks.MaskedLM(V)),
}
STEPS = 150


@pytest.fixture(scope="module", params=sorted(CASES))
def setup(request):
  """A train state built the trainer's way (build_model, build_optimizer, create_train_state), per case."""
  cfg, batch, task = CASES[request.param]()
  model = build_model(ml_collections.ConfigDict(cfg))
  opt_cfg = base_config().optimizer
  opt_cfg.learning_rate = 3e-3
  tx, _ = optim.build_optimizer(opt_cfg, STEPS)
  # RBG keys compile about twice as fast as threefry on CPU; the code path is the trainer's.
  return model, create_train_state(model, tx, batch["x"], jax.random.key(0, impl="rbg")), batch, task


def test_bfloat16_loss_close_to_float32(setup):
  model, state, batch, task = setup
  assert_bfloat16_close_to_float32(model, state.params, batch, task)


def test_overfits_one_batch(setup):
  _, state, batch, task = setup
  assert_overfits_one_batch(state, batch, task, STEPS)
