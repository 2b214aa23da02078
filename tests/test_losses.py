"""Losses against NumPy re-implementations."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from model_lib.train import losses


def _np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_matches_numpy(smoothing):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(7, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, size=7)
  targets = np.eye(5)[labels] * (1 - smoothing) + smoothing / 5
  expected = -(targets * _np_log_softmax(logits.astype(np.float64))).sum(-1)
  got = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing)
  chex.assert_shape(got, (7,))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_sigmoid_binary_cross_entropy_matches_numpy_and_is_stable():
  logits = np.array([-100.0, -3.0, 0.0, 2.5, 100.0], np.float32)
  labels = np.array([0, 1, 1, 0, 1], np.float32)
  x = logits.astype(np.float64)
  expected = np.maximum(x, 0) - x * labels + np.log1p(np.exp(-np.abs(x)))  # log(1+e^x) - y x, stable form
  got = losses.sigmoid_binary_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
  p = 1 / (1 + np.exp(-x[1:4]))
  np.testing.assert_allclose(got[1:4], -(labels[1:4] * np.log(p) + (1 - labels[1:4]) * np.log(1 - p)), rtol=1e-5)


def test_squared_error_and_weighted_mean():
  pred = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0]], np.float32)
  target = np.array([[0.0, 2.0], [1.0, 1.0], [3.0, 0.0]], np.float32)
  per_example = losses.squared_error(jnp.asarray(pred), jnp.asarray(target))
  np.testing.assert_allclose(per_example, ((pred - target) ** 2).sum(-1))
  mask = np.array([1.0, 0.0, 1.0], np.float32)
  np.testing.assert_allclose(losses.weighted_mean(per_example, jnp.asarray(mask)), (1.0 + 9.0) / 2)
  np.testing.assert_allclose(losses.weighted_mean(per_example), (1 + 5 + 9) / 3)
  assert float(losses.weighted_mean(per_example, jnp.zeros(3))) == 0.0  # All masked: 0, not NaN.
