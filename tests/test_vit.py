"""ViT: patch embedding as patches @ W, variants, pooling, mixed precision, overfitting one batch."""

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
from model_lib.models.vit import ViT, PatchEmbed, vit_variant
from model_lib.train import tasks
from model_lib.train.state import create_train_state
from model_checks import assert_bfloat16_close_to_float32, assert_overfits_one_batch

TINY = {"image_size": 8, "patch_size": 4, "embed_dim": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32}


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def test_patch_embedding_is_a_matmul_on_flattened_patches():
  p, c, d = 4, 3, 5
  images = np.random.default_rng(0).normal(size=(2, 8, 12, c)).astype(np.float32)
  module = PatchEmbed(p, d)
  shapes = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), images)["params"])
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
  got = jax.jit(module.apply)({"params": params}, images)
  # (B, H, W, C) -> (B, H/p, p, W/p, p, C) -> (B, H/p, W/p, p, p, C) -> (B, N, p*p*C), row-major like the conv kernel.
  patches = images.reshape(2, 2, p, 3, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, p * p * c)
  want = patches @ params["conv"]["kernel"].reshape(p * p * c, d) + params["conv"]["bias"]
  chex.assert_shape(got, (2, 6, d))
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_variants():
  assert vit_variant("B/16") == {"image_size": 224, "patch_size": 16, "embed_dim": 768, "num_layers": 12,
                                 "num_heads": 12, "mlp_dim": 3072}
  assert vit_variant("L/32", image_size=384)["patch_size"] == 32
  assert vit_variant("Ti/16")["embed_dim"] == 192 and vit_variant("S/16")["num_heads"] == 6
  assert vit_variant("cifar_tiny") == {"image_size": 32, "patch_size": 4, "embed_dim": 192, "num_layers": 6,
                                       "num_heads": 3, "mlp_dim": 768}
  with pytest.raises(ValueError, match="Unknown ViT variant"):
    vit_variant("B")


def test_pooling_shapes_and_checks():
  x = jnp.zeros((2, 8, 8))  # Grayscale without a channel axis.
  for pool in ("cls", "gap"):
    out, variables = jax.eval_shape(ViT(num_outputs=3, pool=pool, **TINY).init_with_output, jax.random.key(0), x)
    chex.assert_shape(out, (2, 3))
    params = variables["params"]
    assert ("cls" in params) == (pool == "cls")
    chex.assert_shape(params["pos_embed"].value, (1, 4 + (pool == "cls"), 16))
  with pytest.raises(ValueError, match="model.image_size"):
    jax.eval_shape(ViT(num_outputs=3, **TINY).init, jax.random.key(0), jnp.zeros((1, 12, 12, 3)))
  with pytest.raises(ValueError, match="pool"):
    jax.eval_shape(ViT(num_outputs=3, pool="max", **TINY).init, jax.random.key(0), x)


@pytest.fixture(scope="module")
def setup():
  """A train state built the trainer's way for a tiny ViT on a random 8x8 RGB batch."""
  images = jnp.asarray(np.random.default_rng(0).normal(size=(6, 8, 8, 3)), jnp.float32)
  batch = {"x": images, "y": jnp.array([0, 1, 2] * 2)}
  model = build_model(ml_collections.ConfigDict({"name": "vit", "dropout": 0.1, **TINY}),
                      num_outputs=3)
  opt_cfg = base_config().optimizer
  opt_cfg.learning_rate = 3e-3
  tx, _ = optim.build_optimizer(opt_cfg, 100)
  # RBG keys compile about twice as fast as threefry on CPU; the code path is the trainer's.
  return model, create_train_state(model, tx, images, jax.random.key(0, impl="rbg")), batch


def test_bfloat16_loss_close_to_float32(setup):
  model, state, batch = setup
  assert_bfloat16_close_to_float32(model, state.params, batch, tasks.Classification(3))


def test_overfits_one_batch(setup):
  _, state, batch = setup
  assert_overfits_one_batch(state, batch, tasks.Classification(3), 100)
