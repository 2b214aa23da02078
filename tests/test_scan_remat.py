"""`model.scan_layers` and `model.remat`: the same math as the unrolled, non-rematerialised transformers."""

import functools
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from model_lib.generate import generate
from model_lib.models import build_model
from model_lib.models.transformer import REMAT_POLICIES, stack_layers, unstack_layers
from model_lib.parallel.rules import param_spec
from model_lib.transfer import update_multipliers

L = 3
TOKENS = jax.random.randint(jax.random.key(0), (2, 16), 1, 50)
IMAGES = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
CONFIGS = {
    "gpt": (dict(name="gpt", vocab_size=50, num_layers=L, num_heads=2, embed_dim=32, mlp_dim=64, max_len=16), 50,
            TOKENS),
    "bert": (dict(name="bert", vocab_size=50, num_layers=L, num_heads=2, embed_dim=32, mlp_dim=64, max_len=16,
                  dropout=0.0), 3, TOKENS.at[:, -3:].set(0)),  # Padded tail: the mask goes through the scan.
    "vit": (dict(name="vit", image_size=16, patch_size=4, num_layers=L, num_heads=2, embed_dim=32, mlp_dim=64), 5,
            IMAGES),
}


def _model(name, **overrides):
  cfg, outputs, x = CONFIGS[name]
  return build_model(ml_collections.ConfigDict({**cfg, **overrides}), num_outputs=outputs), x


def _loss(model, params, x):
  return jnp.mean(model.apply({"params": params}, x) ** 2)


@functools.lru_cache(maxsize=None)
def _reference(name):
  """(unrolled params, input, logits, grads) of workload `name`."""
  model, x = _model(name)
  params = nn.meta.unbox(model.init(jax.random.key(1), x)["params"])
  grads = jax.grad(lambda p: _loss(model, p, x))(params)
  return params, x, model.apply({"params": params}, x), grads


@pytest.mark.parametrize("name", list(CONFIGS))
def test_scanned_layers_equal_unrolled_forward_and_gradients(name):
  params, x, logits, grads = _reference(name)
  scanned, _ = _model(name, scan_layers=True)
  stacked = stack_layers(params, L)
  chex.assert_trees_all_equal_shapes(stacked, nn.meta.unbox(jax.eval_shape(scanned.init, jax.random.key(1), x))["params"])
  chex.assert_trees_all_close(scanned.apply({"params": stacked}, x), logits, rtol=1e-5, atol=1e-5)
  scanned_grads = jax.grad(lambda p: _loss(scanned, p, x))(stacked)
  chex.assert_trees_all_close(unstack_layers(scanned_grads), grads, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_equal(unstack_layers(stacked), params)  # The two converters are inverses.


# GPT under every policy; one policy for each encoder keeps the suite short.
REMAT_CASES = [("gpt", p) for p in REMAT_POLICIES if p != "none"] + [("bert", "full"), ("vit", "dots_no_batch")]


@pytest.mark.parametrize("name,policy", REMAT_CASES)
@pytest.mark.parametrize("scan", [False, True])
def test_every_remat_policy_keeps_the_gradients(name, policy, scan):
  params, x, _, grads = _reference(name)
  model, _ = _model(name, remat=policy, scan_layers=scan)
  p = stack_layers(params, L) if scan else params
  got = jax.grad(lambda q: _loss(model, q, x))(p)
  chex.assert_trees_all_close(unstack_layers(got) if scan else got, grads, rtol=1e-4, atol=1e-6)


def test_remat_recomputes_and_scan_compiles_one_block():
  """`full` remat adds recomputed matmuls to the backward pass; scan's HLO does not grow with depth."""
  def dots(num_layers, **kw):
    model, x = _model("gpt", num_layers=num_layers, **kw)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    text = jax.jit(jax.grad(lambda p: _loss(model, p, x))).lower(params).as_text()
    return text.count("stablehlo.dot_general")

  assert dots(2, remat="full") > dots(2)
  assert dots(2, scan_layers=True) == dots(4, scan_layers=True) < dots(4)


def test_scanned_gpt_samples_the_same_tokens_with_a_kv_cache():
  model, x = _model("gpt")
  scanned, _ = _model("gpt", scan_layers=True)
  params = nn.meta.unbox(model.init(jax.random.key(1), x)["params"])
  prompt = TOKENS[:, :4]
  a = generate(model, params, prompt, 8, jax.random.key(3))
  b = generate(scanned, stack_layers(params, L), prompt, 8, jax.random.key(3))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unknown_remat_policy_names_the_key():
  model, x = _model("gpt", remat="some")
  with pytest.raises(ValueError, match=r"Unknown remat 'some' \(config key model.remat\)"):
    model.init(jax.random.key(0), x)


def test_the_stacked_layer_axis_is_never_sharded():
  # FSDP takes the largest divisible named dimension; 'layers' is excluded even when it is the largest.
  assert param_spec((64, 32, 16), ("layers", "embed", "mlp"), "fsdp", {"fsdp": 4}) == jax.sharding.PartitionSpec(
      None, "fsdp")


def test_layer_decay_refuses_stacked_layers():
  model, x = _model("gpt", scan_layers=True)
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  with pytest.raises(ValueError, match="model.scan_layers=False"):
    update_multipliers(params, layer_decay=0.8)
