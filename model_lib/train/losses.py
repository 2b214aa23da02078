"""Per-example losses and their masked/weighted means."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example CE for integer labels: logits (..., C), labels (...) -> (...)."""
  logits = logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  if label_smoothing == 0.0:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example binary CE with logits: logits (...), labels in {0,1} (...) -> (...)."""
  return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels.astype(jnp.float32))


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example squared error (summed over trailing output dims if any)."""
  err = jnp.square(predictions.astype(jnp.float32) - targets.astype(jnp.float32))
  return err.reshape(err.shape[0], -1).sum(-1) if err.ndim > 1 else err


def weighted_mean(per_example: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Mean of `per_example` under `weights` (a 0/1 mask or any non-negative weights); safe when all are zero."""
  if weights is None:
    return per_example.mean()
  weights = weights.astype(per_example.dtype)
  return (per_example * weights).sum() / jnp.maximum(weights.sum(), 1e-12)
