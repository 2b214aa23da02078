"""FedAvg: one client equals ordinary SGD; vmapped clients equal a Python loop; partitions are disjoint and skewed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_lib.federated import client_batches, make_round, partition


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(120, 5)).astype(np.float32)
  y = (x @ rng.normal(size=(5,)) > 0).astype(np.float32)
  params = {"w": jnp.zeros((5,)), "b": jnp.zeros(())}
  loss = lambda p, b: jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2)  # noqa: E731
  return x, y, params, loss


def _sgd(params, loss, batches, lr):
  for i in range(batches["x"].shape[0]):
    g = jax.grad(loss)(params, {k: v[i] for k, v in batches.items()})
    params = jax.tree.map(lambda w, d: w - lr * d, params, g)
  return params


def test_one_client_equals_ordinary_training():
  x, y, params, loss = _problem()
  fed_round = make_round(loss, lr=0.1)
  idx = client_batches([np.arange(120)], local_steps=4, batch_size=16, rng=np.random.default_rng(0))
  batches = {"x": jnp.asarray(x[idx]), "y": jnp.asarray(y[idx])}
  got = fed_round(params, batches, jnp.ones(1))
  want = _sgd(params, loss, {"x": x[idx[0]], "y": y[idx[0]]}, 0.1)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_vmapped_clients_equal_a_loop_and_weighted_average():
  x, y, params, loss = _problem(1)
  clients = partition(y, 3, "iid", seed=0)
  idx = client_batches(clients, local_steps=3, batch_size=8, rng=np.random.default_rng(1))
  weights = np.array([len(c) for c in clients], np.float32) * np.array([1.0, 2.0, 0.5], np.float32)
  got = make_round(loss, lr=0.05)(params, {"x": jnp.asarray(x[idx]), "y": jnp.asarray(y[idx])}, jnp.asarray(weights))
  locals_ = [_sgd(params, loss, {"x": x[idx[k]], "y": y[idx[k]]}, 0.05) for k in range(3)]
  want = jax.tree.map(lambda *ps: sum(w * p for w, p in zip(weights / weights.sum(), ps)), *locals_)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_partitions_are_disjoint_cover_and_label_skew_limits_classes():
  y = np.repeat(np.arange(10), 60)
  for scheme in ("iid", "label_skew"):
    parts = partition(y, 10, scheme, seed=3)
    allidx = np.concatenate(parts)
    assert len(allidx) == len(y) and len(np.unique(allidx)) == len(y)
  skew = partition(y, 10, "label_skew", seed=3, classes_per_client=2)
  assert max(len(np.unique(y[p])) for p in skew) <= 2
  assert min(len(np.unique(y[p])) for p in partition(y, 10, "iid", seed=3)) >= 8
  with pytest.raises(ValueError, match="federated.partitions"):
    partition(y, 2, "dirichlet", seed=0)
