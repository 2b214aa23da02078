"""The fused-Threefry dropout equals JAX's random bits and `nn.Dropout` bit for bit."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from model_lib.models import build_model
from model_lib.models.dropout import Dropout, bernoulli, random_bits, threefry_2x32

SHAPES = [(1,), (7, 33), (3, 5, 7), (128, 512), (2, 3, 4, 5)]


def test_threefry_known_answers():
  """Random123's published Threefry-2x32 (20 rounds) test vectors."""
  cases = [((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
           ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
           ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
  for key, count, expected in cases:
    u = lambda v: jnp.asarray(v, jnp.uint32)
    out = threefry_2x32(u(key[0]), u(key[1]), u(count[0]), u(count[1]))
    assert (int(out[0]), int(out[1])) == expected


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("typed", [True, False])
def test_random_bits_equal_jax(shape, typed):
  key = jax.random.key(11) if typed else jax.random.PRNGKey(11)
  ours = jax.jit(lambda k: random_bits(k, shape))(key)
  chex.assert_trees_all_equal(ours, jax.random.bits(key, shape, jnp.uint32))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.8, 0.999, 1.0])
def test_bernoulli_equals_jax(p):
  for seed in range(3):
    key = jax.random.fold_in(jax.random.key(3), seed)
    chex.assert_trees_all_equal(bernoulli(key, p, (64, 65)), jax.random.bernoulli(key, p, (64, 65)))
  mask = np.asarray(bernoulli(jax.random.key(0), p, (200, 500)))
  assert abs(mask.mean() - p) < 5 * np.sqrt(p * (1 - p) / mask.size) + 1e-9  # Binomial mean within 5 sigma.


def test_other_prng_implementations_fall_back():
  key = jax.random.key(5, impl="rbg")
  assert random_bits(key, (4, 4)) is None
  chex.assert_trees_all_equal(bernoulli(key, 0.7, (16, 16)), jax.random.bernoulli(key, 0.7, (16, 16)))


class _Net(nn.Module):
  """Dense -> dropout -> Dense, with either dropout class (both auto-named 'Dropout_0', so same rng stream)."""

  cls: type
  rate: float
  broadcast_dims: tuple = ()

  @nn.compact
  def __call__(self, x, train):
    h = nn.Dense(16)(x)
    h = self.cls(self.rate, broadcast_dims=self.broadcast_dims)(h, deterministic=not train)
    return nn.Dense(3)(h)


@pytest.mark.parametrize("rate,dims", [(0.2, ()), (0.5, (0,)), (0.9, (-1,)), (0.0, ()), (1.0, ())])
def test_dropout_equals_flax_dropout(rate, dims):
  x = jax.random.normal(jax.random.key(0), (4, 6, 8))
  ours, ref = _Net(Dropout, rate, dims), _Net(nn.Dropout, rate, dims)
  params = ref.init(jax.random.key(1), x, False)
  rngs = {"dropout": jax.random.key(2)}

  def loss(model, p):
    return jnp.sum(model.apply(p, x, True, rngs=rngs) ** 2)

  chex.assert_trees_all_equal(ours.apply(params, x, True, rngs=rngs), ref.apply(params, x, True, rngs=rngs))
  chex.assert_trees_all_equal(jax.grad(lambda p: loss(ours, p))(params), jax.grad(lambda p: loss(ref, p))(params))
  chex.assert_trees_all_equal(ours.apply(params, x, False), ref.apply(params, x, False))


def test_model_training_forward_unchanged():
  """An MLP with dropout gives the same training-mode outputs as with `nn.Dropout` (same rng stream)."""
  model = build_model(ml_collections.ConfigDict(dict(name="mlp", hidden_sizes=(32, 32), dropout=0.3)), num_outputs=4)
  x = jax.random.normal(jax.random.key(0), (8, 10))
  params = model.init(jax.random.key(1), x)
  out = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(7)})

  class Ref(nn.Module):
    @nn.compact
    def __call__(self, x):
      for _ in range(2):
        x = nn.Dropout(0.3, deterministic=False)(nn.relu(nn.Dense(32)(x)))
      return nn.Dense(4)(x)

  expected = Ref().apply({"params": params["params"]}, x, rngs={"dropout": jax.random.key(7)})
  chex.assert_trees_all_close(out, expected, rtol=1e-6, atol=1e-6)
