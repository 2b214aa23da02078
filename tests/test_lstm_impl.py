"""lstm_impl: the fused custom-VJP LSTM equals the nn.RNN scan reference (outputs, carries, every gradient)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_lib import generate
from model_lib.models import lstm
from model_lib.models.lstm import LSTM, LSTMClassifier, LSTMLanguageModel

V = 20
# float32 agreement: same math, different summation order and σ(x) = (1 + tanh(x/2)) / 2 in the fused gates.
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def _random_params(model, *args, scale=0.5, **kwargs):
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *args, **kwargs)["params"])
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * scale, jnp.float32), shapes)


def _assert_trees_close(got, want, **tol):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, err_msg=jax.tree_util.keystr(path), **(tol or TOL))


def _layer_value_and_grads(params, x, lengths, weights, reverse):
  """Per impl (scan, fused): a loss over the outputs and both final carries, and its gradients w.r.t. params and x."""
  w_out, w_c, w_h = weights

  def loss(params, x, impl):
    (c, h), out = LSTM(5, reverse=reverse, lstm_impl=impl).apply({"params": params}, x, lengths)
    return (out * w_out).sum() + (c * w_c).sum() + (h * w_h).sum(), (c, h, out)

  return [jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x, impl) for impl in ("scan", "fused")]


@pytest.mark.parametrize("reverse, with_lengths", [(False, True), (True, True), (True, False)])
def test_layer_matches_scan(reverse, with_lengths):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(5, 9, 3)), jnp.float32)
  lengths = jnp.asarray([9, 1, 4, 7, 2]) if with_lengths else None  # Full length and length 1 included.
  weights = tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(5, 9, 5), (5, 5), (5, 5)])
  params = _random_params(LSTM(5, reverse=reverse), x, lengths)
  ((want_loss, want_aux), want_grads), ((got_loss, got_aux), got_grads) = jax.jit(
      _layer_value_and_grads, static_argnums=4)(params, x, lengths, weights, reverse)
  np.testing.assert_allclose(got_loss, want_loss, **TOL)
  _assert_trees_close(got_aux, want_aux)  # Final carry (c, h) and outputs, padding positions included.
  _assert_trees_close(got_grads, want_grads)  # Input kernel, bias, recurrent kernel; and x.


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def test_fused_layer_matches_numpy_equations():
  """Independent of both implementations: a textbook float64 LSTM over each unpadded sequence."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 6, 3))
  lengths = [6, 3]
  layer = LSTM(4, lstm_impl="fused")
  params = _random_params(layer, jnp.asarray(x, jnp.float32), jnp.asarray(lengths))
  (c, h), out = jax.jit(layer.apply)({"params": params}, jnp.asarray(x, jnp.float32), jnp.asarray(lengths))
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  for b, n in enumerate(lengths):
    want_c, want_h = np.zeros(4), np.zeros(4)
    for t in range(n):
      z = x[b, t] @ p["input"]["kernel"] + p["input"]["bias"] + want_h @ p["cell"]["recurrent_kernel"]
      i, f, g, o = np.split(z, 4)
      want_c = _sigmoid(f) * want_c + _sigmoid(i) * np.tanh(g)
      want_h = _sigmoid(o) * np.tanh(want_c)
      np.testing.assert_allclose(out[b, t], want_h, atol=1e-5)
    np.testing.assert_allclose(c[b], want_c, atol=1e-5)
    np.testing.assert_allclose(h[b], want_h, atol=1e-5)


def _padded_tokens(lengths, steps, seed=0):
  rng = np.random.default_rng(seed)
  x = np.zeros((len(lengths), steps), np.int32)
  for b, n in enumerate(lengths):
    x[b, :n] = rng.integers(1, V, n)
  return jnp.asarray(x)


def _model_value_and_grads(models, params, x):
  """Per model: (loss over its outputs, outputs), gradients w.r.t. params; one compilation for all."""
  def loss(params, model):
    out = model.apply({"params": params}, x)
    return (out * jnp.sin(jnp.arange(out.size, dtype=jnp.float32).reshape(out.shape))).sum(), out

  return jax.jit(lambda p: [jax.value_and_grad(loss, has_aux=True)(p, m) for m in models])(params)


def test_bidirectional_two_layer_classifier_matches_scan():
  x = _padded_tokens([8, 1, 5, 3], 8)
  kwargs = dict(num_outputs=3, vocab_size=V, embed_dim=4, hidden_size=6, num_layers=2, bidirectional=True)
  ref, fused = LSTMClassifier(**kwargs, lstm_impl="scan"), LSTMClassifier(**kwargs, lstm_impl="fused")
  params = _random_params(ref, x)
  [(_, want_out), want_grads], [(_, got_out), got_grads] = _model_value_and_grads((ref, fused), params, x)
  np.testing.assert_allclose(got_out, want_out, **TOL)
  _assert_trees_close(got_grads, want_grads)


def test_language_model_matches_scan_and_decodes():
  x = _padded_tokens([7, 7, 7], 7, seed=3)
  kwargs = dict(num_outputs=V, vocab_size=V, embed_dim=8, hidden_size=6, num_layers=2)
  ref, fused = LSTMLanguageModel(**kwargs, lstm_impl="scan"), LSTMLanguageModel(**kwargs, lstm_impl="fused")
  params = _random_params(ref, x)
  ((_, want_out), want_grads), ((_, got_out), got_grads) = _model_value_and_grads((ref, fused), params, x)
  np.testing.assert_allclose(got_out, want_out, **TOL)
  _assert_trees_close(got_grads, want_grads)
  # Decoding (always the scan path) continues where a fused full-sequence call would be.
  decode = jax.jit(lambda cache, tokens: fused.apply({"params": params, "cache": cache}, tokens, decode=True,
                                                     mutable=["cache"]))
  logits, updates = decode(generate.init_cache(fused, 3), x[:, :5])
  np.testing.assert_allclose(logits, got_out[:, :5], **TOL)
  logits, _ = decode(updates["cache"], x[:, 5:])
  np.testing.assert_allclose(logits, got_out[:, 5:], **TOL)


def test_same_parameters_and_initialization():
  x = _padded_tokens([5, 2], 5)
  kwargs = dict(num_outputs=1, vocab_size=V, embed_dim=4, hidden_size=3, bidirectional=True)
  want, got = jax.jit(lambda key: [LSTMClassifier(**kwargs, lstm_impl=impl).init(key, x)
                                   for impl in ("scan", "fused")])(jax.random.key(0))
  assert jax.tree.map(lambda p: p.names, got, is_leaf=lambda p: isinstance(p, nn.LogicallyPartitioned)) == \
      jax.tree.map(lambda p: p.names, want, is_leaf=lambda p: isinstance(p, nn.LogicallyPartitioned))
  _assert_trees_close(nn.meta.unbox(got), nn.meta.unbox(want), rtol=0, atol=0)
  assert set(got["params"]["lstm_0"]) == {"input", "cell"}


def test_extra_batch_dims():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 3, 5, 4)), jnp.float32)
  lengths = jnp.asarray([[5, 1, 3], [2, 5, 4]])
  layer = LSTM(3, reverse=True, lstm_impl="fused")
  params = _random_params(layer, x, lengths)
  (c, h), out = layer.apply({"params": params}, x, lengths)
  (want_c, want_h), want_out = layer.apply({"params": params}, x.reshape(6, 5, 4), lengths.reshape(6))
  np.testing.assert_allclose(out.reshape(6, 5, 3), want_out, **TOL)
  np.testing.assert_allclose(c.reshape(6, 3), want_c, **TOL)
  np.testing.assert_allclose(h.reshape(6, 3), want_h, **TOL)


def test_bfloat16_fused_close_to_scan():
  x = _padded_tokens([6, 2, 4], 6)
  kwargs = dict(num_outputs=2, vocab_size=V, embed_dim=8, hidden_size=8, dtype="bfloat16")
  ref, fused = LSTMClassifier(**kwargs, lstm_impl="scan"), LSTMClassifier(**kwargs, lstm_impl="fused")
  params = _random_params(ref, x)
  ((_, want_out), want_grads), ((_, got_out), got_grads) = _model_value_and_grads((ref, fused), params, x)
  assert got_out.dtype == jnp.float32
  np.testing.assert_allclose(got_out, want_out, rtol=0.02, atol=0.02)
  # The scan accumulates the recurrent-kernel gradient in bfloat16 over the steps; the fused path in float32.
  _assert_trees_close(got_grads, want_grads, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("backend, want", [("cpu", "fused"), ("gpu", "fused"), ("tpu", "fused"),
                                           ("METAL", "scan")])
def test_auto_resolves_per_backend(monkeypatch, backend, want):
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert lstm.resolve_lstm_impl("auto") == want
  assert lstm.resolve_lstm_impl("scan") == "scan"
  assert lstm.resolve_lstm_impl("fused") == "fused"


def test_auto_runs_the_fused_kernel_on_cpu(monkeypatch):
  calls = []
  kernel = lstm.lstm_kernels.lstm_layer
  monkeypatch.setattr(lstm.lstm_kernels, "lstm_layer", lambda *a, **k: calls.append(1) or kernel(*a, **k))
  x = _padded_tokens([3, 1], 3)
  model = LSTMClassifier(num_outputs=1, vocab_size=V, embed_dim=2, hidden_size=2)
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  jax.eval_shape(model.init, jax.random.key(0), x)
  assert calls
  calls.clear()
  monkeypatch.setattr(jax, "default_backend", lambda: "METAL")
  jax.eval_shape(model.init, jax.random.key(0), x)
  assert not calls


def test_unknown_impl_names_the_config_key():
  x = _padded_tokens([3], 3)
  with pytest.raises(ValueError, match=r"model\.lstm_impl.*'auto', 'scan', 'fused'"):
    jax.eval_shape(LSTMClassifier(num_outputs=1, vocab_size=V, lstm_impl="cudnn").init, jax.random.key(0), x)
