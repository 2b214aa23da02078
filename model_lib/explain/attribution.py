"""Attributions for differentiable models: vanilla gradients, SmoothGrad, integrated gradients, occlusion.

`f` is a scalar-per-example function of the input batch, e.g. the logit of the target class:
`f = lambda x: model.apply(variables, x)[:, target]`. Everything is jitted and batched.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ScalarFn = Callable[[jax.Array], jax.Array]  # (B, ...) -> (B,)


def class_score_fn(apply_fn: Callable[[jax.Array], jax.Array], target: int | jax.Array) -> ScalarFn:
  """(B, ...) -> (B,) score of class `target` (an int, or one per example) from logits (B, C) or (B, 1)."""
  def f(x):
    logits = apply_fn(x)
    if logits.ndim == 1 or logits.shape[-1] == 1:
      return logits.reshape(logits.shape[0])
    t = jnp.broadcast_to(jnp.asarray(target), (logits.shape[0],))
    return jnp.take_along_axis(logits, t[:, None], axis=-1)[:, 0]
  return f


def saliency(f: ScalarFn, x: jax.Array) -> jax.Array:
  """Vanilla gradient d f(x) / d x, same shape as x."""
  return jax.grad(lambda v: f(v).sum())(x)


def smoothgrad(f: ScalarFn, x: jax.Array, rng: jax.Array, num_samples: int = 32, noise: float = 0.15) -> jax.Array:
  """Mean gradient over x + N(0, (noise * (max x - min x))^2) samples (Smilkov et al. 2017)."""
  sigma = noise * (jnp.max(x) - jnp.min(x))

  def one(key):
    return saliency(f, x + sigma * jax.random.normal(key, x.shape, x.dtype))

  return jax.lax.map(one, jax.random.split(rng, num_samples)).mean(0)


def integrated_gradients(f: ScalarFn, x: jax.Array, baseline: jax.Array | None = None,
                         num_steps: int = 64) -> jax.Array:
  """(x - x0) * mean of grads along the straight path (Riemann trapezoid); sums to ≈ f(x) - f(x0)."""
  x0 = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(baseline, x.shape)
  alphas = jnp.linspace(0.0, 1.0, num_steps + 1)
  grads = jax.lax.map(lambda a: saliency(f, x0 + a * (x - x0)), alphas)  # (S+1, B, ...)
  avg = (grads[:-1] + grads[1:]).mean(0) / 2.0  # Trapezoid rule.
  return (x - x0) * avg


def occlusion(f: ScalarFn, x: jax.Array, patch: int = 4, stride: int | None = None, fill: float = 0.0) -> jax.Array:
  """Drop in score when a patch×patch window of an image batch (B, H, W[, C]) is set to `fill`, per pixel.

  Each pixel gets the mean drop over the windows covering it.
  """
  stride = stride or patch
  h, w = x.shape[1], x.shape[2]
  base = f(x)  # (B,)
  starts = [(i, j) for i in range(0, h - patch + 1, stride) for j in range(0, w - patch + 1, stride)]
  heat = jnp.zeros(x.shape[:3], jnp.float32)
  count = jnp.zeros(x.shape[1:3], jnp.float32)
  for i, j in starts:
    occluded = x.at[:, i:i + patch, j:j + patch].set(fill)
    drop = base - f(occluded)  # (B,)
    heat = heat.at[:, i:i + patch, j:j + patch].add(drop[:, None, None])
    count = count.at[i:i + patch, j:j + patch].add(1.0)
  return heat / jnp.maximum(count, 1.0)
