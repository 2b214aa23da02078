"""LSTMs: the cell against NumPy LSTM equations, exact padding handling, mixed precision, overfitting one batch."""

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
from model_lib.models.lstm import LSTM, LSTMClassifier
from model_lib.train import tasks
from model_lib.train.state import create_train_state
from model_checks import assert_bfloat16_close_to_float32, assert_overfits_one_batch

V = 20


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _numpy_lstm(x, w_x, b, w_h, reverse=False):
  """Textbook LSTM over one unpadded sequence x (T, D); gates i, f, g, o. Returns outputs (T, H) and (c, h)."""
  hidden = w_h.shape[0]
  c, h = np.zeros(hidden), np.zeros(hidden)
  outs = np.zeros((len(x), hidden))
  steps = range(len(x) - 1, -1, -1) if reverse else range(len(x))
  for t in steps:
    z = x[t] @ w_x + b + h @ w_h
    i, f, g, o = np.split(z, 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    outs[t] = h
  return outs, (c, h)


def _random_params(model, *args, scale=0.5):
  """Normal(0, scale) parameters drawn by NumPy on eval_shape's shapes: nothing to compile."""
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *args)["params"])
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * scale, jnp.float32), shapes)


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_layer_matches_numpy_equations(reverse):
  d, hidden, lengths = 3, 5, np.array([7, 4])
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, d)), jnp.float32)
  layer = LSTM(hidden, reverse=reverse)
  params = _random_params(layer, x, jnp.asarray(lengths))
  (c, h), outs = jax.jit(layer.apply)({"params": params}, x, jnp.asarray(lengths))
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  for b, n in enumerate(lengths):
    want_outs, (want_c, want_h) = _numpy_lstm(np.asarray(x[b, :n], np.float64), p["input"]["kernel"],
                                               p["input"]["bias"], p["cell"]["recurrent_kernel"], reverse)
    np.testing.assert_allclose(outs[b, :n], want_outs, atol=1e-5)
    np.testing.assert_allclose(c[b], want_c, atol=1e-5)
    np.testing.assert_allclose(h[b], want_h, atol=1e-5)


def test_classifier_defaults_are_the_classic_recipe():
  model = LSTMClassifier(num_outputs=1)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
  vocab, e, h = 10000, 32, 128
  assert sum(p.size for p in jax.tree.leaves(params)) == vocab * e + 4 * (e * h + h * h + h) + h + 1


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_padding_equals_unpadded_run(bidirectional):
  model = LSTMClassifier(num_outputs=3, vocab_size=V, embed_dim=4, hidden_size=6, num_layers=2,
                         bidirectional=bidirectional)
  rng = np.random.default_rng(0)
  lengths = [9, 3]
  padded = np.zeros((2, 12), np.int32)
  for b, n in enumerate(lengths):
    padded[b, :n] = rng.integers(1, V, n)
  params = {"params": _random_params(model, padded)}
  apply = jax.jit(model.apply)
  got = apply(params, jnp.asarray(padded))
  for b, n in enumerate(lengths):
    np.testing.assert_allclose(got[b:b + 1], apply(params, jnp.asarray(padded[b:b + 1, :n])), atol=1e-5)
  # Every real token matters, the first one included (the backward half ends there).
  assert not np.allclose(got, apply(params, jnp.asarray(padded).at[:, 0].add(1)), atol=1e-4)


def _tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(1, V, shape), jnp.int32)


def _classifier_case():
  x = np.array(_tokens((8, 12)))
  x[::2, 6:] = 0  # Half the batch padded.
  cfg = {"name": "lstm_classifier", "num_outputs": 1, "vocab_size": V, "embed_dim": 8, "hidden_size": 16,
         "bidirectional": True, "dropout": 0.1}
  return cfg, {"x": jnp.asarray(x), "y": jnp.array([0, 1] * 4)}, tasks.Binary(), 60, 1e-2


def _lm_case():
  x = _tokens((4, 12))
  cfg = {"name": "lstm_lm", "num_outputs": V, "vocab_size": V, "embed_dim": 16, "hidden_size": 32}
  batch = {"x": x, "y": jnp.roll(x, -1, 1), "weights": jnp.ones(x.shape).at[:, -1].set(0)}
  return cfg, batch, tasks.LanguageModel(V), 150, 2e-2


@pytest.fixture(scope="module", params=["lstm_classifier", "lstm_lm"])
def setup(request):
  """A train state built the trainer's way (build_model, build_optimizer, create_train_state), per model."""
  cfg, batch, task, steps, lr = _classifier_case() if request.param == "lstm_classifier" else _lm_case()
  model = build_model(ml_collections.ConfigDict(cfg))
  opt_cfg = base_config().optimizer
  opt_cfg.learning_rate = lr
  tx, _ = optim.build_optimizer(opt_cfg, steps)
  # RBG keys compile about twice as fast as threefry on CPU; the code path is the trainer's.
  state = create_train_state(model, tx, batch["x"], jax.random.key(0, impl="rbg"))
  return model, state, batch, task, steps


def test_bfloat16_loss_close_to_float32(setup):
  model, state, batch, task, _ = setup
  assert_bfloat16_close_to_float32(model, state.params, batch, task)


def test_overfits_one_batch(setup):
  _, state, batch, task, steps = setup
  assert_overfits_one_batch(state, batch, task, steps)
