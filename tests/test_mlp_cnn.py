"""MLP and CNN: shapes, dropout and BatchNorm semantics, a NumPy forward reference."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from model_lib.models import build_model


def _model(**kw):
  return build_model(ml_collections.ConfigDict(kw), num_outputs=kw.pop("num_outputs", 3))


def test_mlp_forward_equals_numpy():
  model = _model(name="mlp", hidden_sizes=(5,), activation="relu")
  x = jax.random.normal(jax.random.key(0), (4, 2, 3))
  params = model.init(jax.random.key(1), x)["params"]
  out = model.apply({"params": params}, x)
  chex.assert_shape(out, (4, 3))
  h = np.maximum(np.asarray(x).reshape(4, 6) @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"], 0)
  np.testing.assert_allclose(out, h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"], rtol=1e-5, atol=1e-6)


def test_dropout_identity_at_eval_and_rescales_at_train():
  model = _model(name="mlp", hidden_sizes=(1000,), dropout=0.25, activation="identity")
  x = jnp.ones((1, 1))
  params = model.init(jax.random.key(0), x)["params"]
  params = jax.tree.map(jnp.ones_like, params)  # Every hidden unit = 2, output = sum of kept units / 0.75 + 1.
  eval_out = model.apply({"params": params}, x, train=False)
  np.testing.assert_allclose(eval_out, 1000 * 2 + 1, rtol=1e-6)
  train_out = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)})
  kept = (float(train_out[0, 0]) - 1) / (2 / 0.75)
  assert abs(kept - round(kept)) < 5e-2  # Kept units are scaled by exactly 1 / (1 - rate).
  assert 0.7 * 1000 < kept < 0.8 * 1000
  again = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)})
  np.testing.assert_array_equal(train_out, again)  # Same key, same mask.


def test_batch_norm_updates_running_stats_in_train_and_uses_them_at_eval():
  model = _model(name="mlp", hidden_sizes=(4,), batch_norm=True, batch_norm_momentum=0.9)
  x = jax.random.normal(jax.random.key(0), (64, 3)) * 2 + 1
  variables = model.init(jax.random.key(1), x)
  chex.assert_trees_all_close(variables["batch_stats"]["BatchNorm_0"]["mean"], jnp.zeros(4))
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  h = np.asarray(x) @ variables["params"]["Dense_0"]["kernel"] + variables["params"]["Dense_0"]["bias"]
  np.testing.assert_allclose(updates["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * h.mean(0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(updates["batch_stats"]["BatchNorm_0"]["var"], 0.9 + 0.1 * h.var(0), rtol=1e-4)
  # Eval ignores the batch: one example gives the same output alone or inside the batch.
  new_vars = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
  full = model.apply(new_vars, x, train=False)
  single = model.apply(new_vars, x[:1], train=False)
  np.testing.assert_allclose(full[:1], single, rtol=1e-5, atol=1e-6)
  # Train mode normalises with the batch's own statistics, so the same example differs.
  train_single = model.apply(new_vars, x[:2], train=True, mutable=["batch_stats"])[0]
  assert not np.allclose(train_single[:1], single, atol=1e-3)


@pytest.mark.parametrize("padding,expected_flat", [("VALID", 5 * 5 * 16), ("SAME", 7 * 7 * 16)])
def test_cnn_shapes(padding, expected_flat):
  model = _model(name="cnn", features=(8, 16), padding=padding, dense_sizes=(32,), num_outputs=10)
  x = jnp.zeros((2, 28, 28))
  params = model.init(jax.random.key(0), x)["params"]
  chex.assert_shape(model.apply({"params": params}, x), (2, 10))
  chex.assert_shape(params["Dense_0"]["kernel"], (expected_flat, 32))


def test_unknown_model_and_bad_model_key_errors():
  with pytest.raises(ValueError, match=r"Unknown model 'mlpp'.*model.name.*Did you mean 'mlp'"):
    _model(name="mlpp")
  with pytest.raises(ValueError, match="hidden_size"):
    _model(name="mlp", hidden_size=(3,))
  with pytest.raises(ValueError, match="model.activation"):
    model = _model(name="mlp", activation="relux")
    model.init(jax.random.key(0), jnp.zeros((1, 2)))
