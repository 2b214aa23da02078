"""Magnitude pruning: exact sparsity (global and per layer), pruned weights stay exactly zero, schedule formula."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from model_lib.compress.prune import magnitude_masks, polynomial_sparsity, prune_by_magnitude, sparsity_report


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {"a": {"kernel": jnp.asarray(rng.normal(size=(20, 30)), jnp.float32),
                "bias": jnp.asarray(rng.normal(size=(30,)), jnp.float32)},
          "b": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 8)) * 3, jnp.float32)}}


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.333])
def test_global_masks_give_exact_sparsity_and_prune_smallest(sparsity):
  p = _params()
  m = magnitude_masks(p, sparsity, "global")
  kernels = np.concatenate([np.abs(np.asarray(p["a"]["kernel"])).ravel(), np.abs(np.asarray(p["b"]["kernel"])).ravel()])
  keep = np.concatenate([np.asarray(m["a"]["kernel"]).ravel(), np.asarray(m["b"]["kernel"]).ravel()])
  assert (~keep).sum() == round(sparsity * kernels.size)
  assert kernels[~keep].max() <= kernels[keep].min()  # Exactly the smallest magnitudes are pruned.
  assert np.asarray(m["a"]["bias"]).all()  # Biases are never pruned.


def test_layer_masks_give_exact_sparsity_per_layer():
  p = _params()
  m = magnitude_masks(p, 0.75, "layer")
  for name in ("a", "b"):
    mask = np.asarray(m[name]["kernel"])
    assert (~mask).sum() == round(0.75 * mask.size)
    w = np.abs(np.asarray(p[name]["kernel"]))
    assert w[~mask].max() <= w[mask].min()


def test_pruned_weights_stay_exactly_zero_through_training():
  p = _params()
  tx = optax.chain(optax.adam(1e-2), prune_by_magnitude(0.8, "global", "oneshot", begin_step=0))
  state = tx.init(p)
  rng = np.random.default_rng(1)
  for _ in range(25):
    g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), p)
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
  report = sparsity_report(p)
  assert report["zeros"] == round(0.8 * report["size"])
  mask = state[1].masks
  for w, m in zip(jax.tree.leaves(p), jax.tree.leaves(mask)):
    assert np.all(np.asarray(w)[~np.asarray(m)] == 0.0)


def test_polynomial_schedule_matches_formula_and_gradual_pruning_follows_it():
  for t in (0, 10, 25, 40, 60, 100):
    progress = min(max((t - 10) / 40, 0), 1)
    assert float(polynomial_sparsity(t, 0.9, 10, 50)) == pytest.approx(0.9 * (1 - (1 - progress) ** 3), abs=1e-6)
  p = _params()
  tx = prune_by_magnitude(0.9, "layer", "gradual", begin_step=10, end_step=50, frequency=10)
  state = tx.init(p)
  zero = jax.tree.map(jnp.zeros_like, p)
  seen = {}
  for t in range(60):
    updates, state = tx.update(zero, state, p)
    p = optax.apply_updates(p, updates)
    seen[t] = sparsity_report(p)["layers"]["a/kernel"]["sparsity"]
  for t in (10, 20, 30, 40, 50):
    assert seen[t] == pytest.approx(round(float(polynomial_sparsity(t, 0.9, 10, 50)) * 600) / 600)
  assert seen[9] == 0.0 and seen[59] == pytest.approx(0.9)
