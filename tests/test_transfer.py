"""Fine-tuning: partial restore by path, fresh heads, frozen params bitwise unchanged, per-group LR multipliers."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from model_lib import optim
from model_lib.checkpoint_inspect import flat_leaves
from model_lib.config import base_config
from model_lib.models import build_model
from model_lib.transfer import partial_restore, update_multipliers


def _mlp(num_outputs, hidden=(16, 8)):
  model = build_model(ml_collections.ConfigDict({"name": "mlp", "hidden_sizes": hidden}), num_outputs)
  return model, model.init(jax.random.key(num_outputs), jnp.zeros((2, 5)))["params"]


def test_partial_restore_loads_matching_leaves_bitwise_and_keeps_new_head():
  _, source = _mlp(10)
  _, target = _mlp(3)  # Same backbone, different head width.
  merged, report = partial_restore(target, flat_leaves(source))
  for name in ("Dense_0", "Dense_1"):
    for leaf in ("kernel", "bias"):
      np.testing.assert_array_equal(merged[name][leaf], source[name][leaf])
  np.testing.assert_array_equal(merged["Dense_2"]["kernel"], target["Dense_2"]["kernel"])  # Fresh head.
  assert report["resized"] == ["Dense_2/bias: (10,) -> (3,)", "Dense_2/kernel: (8, 10) -> (8, 3)"]
  assert sorted(report["loaded"]) == ["Dense_0/bias", "Dense_0/kernel", "Dense_1/bias", "Dense_1/kernel"]
  _, bigger = _mlp(3, hidden=(16, 8, 4))
  _, report = partial_restore(bigger, flat_leaves(source))
  assert "Dense_3/kernel" in report["new"]


def test_frozen_params_stay_bitwise_unchanged_while_others_move():
  model, params = _mlp(3)
  cfg = base_config().optimizer
  cfg.name, cfg.weight_decay, cfg.freeze = "adamw", 0.1, r"^Dense_0/"
  tx, _ = optim.build_optimizer(cfg, 100, params=params)
  state = tx.init(params)
  x = jax.random.normal(jax.random.key(0), (8, 5))
  y = jnp.arange(8) % 3

  @jax.jit
  def step(p, s):
    g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": q}, x), y).mean())(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  p = params
  for _ in range(5):
    p, state = step(p, state)
  np.testing.assert_array_equal(p["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
  np.testing.assert_array_equal(p["Dense_0"]["bias"], params["Dense_0"]["bias"])
  assert not np.allclose(p["Dense_1"]["kernel"], params["Dense_1"]["kernel"])


def test_lr_multipliers_scale_sgd_updates_exactly():
  _, params = _mlp(3)
  cfg = base_config().optimizer
  cfg.name, cfg.learning_rate, cfg.lr_multipliers = "sgd", 0.1, ("Dense_2=0.5", "kernel=2.0")
  tx, _ = optim.build_optimizer(cfg, 10, params=params)
  g = jax.tree.map(jnp.ones_like, params)
  u, _ = tx.update(g, tx.init(params), params)
  np.testing.assert_allclose(u["Dense_2"]["kernel"], -0.05)  # First matching rule wins.
  np.testing.assert_allclose(u["Dense_0"]["kernel"], -0.2)
  np.testing.assert_allclose(u["Dense_0"]["bias"], -0.1)


def test_layer_decay_multipliers_follow_depth():
  params = {"embed": {"embedding": jnp.zeros((3, 2))}, "block_0": {"w": jnp.zeros(2)}, "block_1": {"w": jnp.zeros(2)},
            "head": {"kernel": jnp.zeros((2, 2))}}
  m = update_multipliers(params, layer_decay=0.5)
  assert m["head"]["kernel"] == 1.0 and m["block_1"]["w"] == 0.5 and m["block_0"]["w"] == 0.25
  assert m["embed"]["embedding"] == 0.125
  with pytest.raises(ValueError, match="regex=multiplier"):
    update_multipliers(params, lr_multipliers=("head",))
