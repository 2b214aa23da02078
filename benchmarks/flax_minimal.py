"""The peer workloads as a minimal hand-written Flax + Optax step: stock `flax.linen` layers, one `jax.jit`.

The floor model_lib's step must not be slower than: no logical axes, no sharding rules, no metrics beyond the loss.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = x.reshape(x.shape[0], -1)
    for _ in range(2):
      x = nn.Dropout(0.2, deterministic=not train)(nn.relu(nn.Dense(512)(x)))
    return nn.Dense(10)(x)


class CNN(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = x[..., None]
    for feats in (32, 64):
      x = nn.max_pool(nn.relu(nn.Conv(feats, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
    x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


class LSTMClassifier(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Embed(10000, 128)(x)
    (_, last), _ = nn.RNN(nn.OptimizedLSTMCell(128), return_carry=True)(h)
    return nn.Dense(1)(last)[:, 0]


class Block(nn.Module):
  heads: int
  mlp: int
  causal: bool
  eps: float
  approximate: bool

  @nn.compact
  def __call__(self, x):
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2])) if self.causal else None
    x = x + nn.MultiHeadDotProductAttention(self.heads)(nn.LayerNorm(self.eps)(x), mask=mask)
    h = nn.gelu(nn.Dense(self.mlp)(nn.LayerNorm(self.eps)(x)), approximate=self.approximate)
    return x + nn.Dense(x.shape[-1])(h)


class GPT(nn.Module):
  vocab: int
  layers: int
  heads: int
  d: int
  context: int

  @nn.compact
  def __call__(self, x, train: bool):
    wte = nn.Embed(self.vocab, self.d)
    h = wte(x) + nn.Embed(self.context, self.d)(jnp.arange(x.shape[1]))[None]
    for _ in range(self.layers):
      h = Block(self.heads, 4 * self.d, True, 1e-5, True)(h)
    return wte.attend(nn.LayerNorm(1e-5)(h))


class ViT(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Conv(192, (4, 4), strides=(4, 4), padding="VALID")(x)
    h = h.reshape(h.shape[0], -1, 192)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, 192))
    h = jnp.concatenate([jnp.broadcast_to(cls, (h.shape[0], 1, 192)), h], axis=1)
    h = h + self.param("pos", nn.initializers.normal(0.02), (1, h.shape[1], 192))
    for _ in range(6):
      h = Block(3, 768, False, 1e-6, False)(h)
    return nn.Dense(10)(nn.LayerNorm(1e-6)(h)[:, 0])


def _classification(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _binary(logits, y):
  return optax.sigmoid_binary_cross_entropy(logits, y.astype(jnp.float32)).mean()


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable]] = {
    "mlp": (MLP, _classification),
    "cnn": (CNN, _classification),
    "lstm": (LSTMClassifier, _binary),
    "gpt": (lambda: GPT(65, 4, 4, 128, 64), _classification),
    "gpt_m": (lambda: GPT(65, 6, 6, 384, 256), _classification),
    "vit": (ViT, _classification),
}


class FlaxStep:
  """A minimal jitted Flax/Optax AdamW step on two fixed device batches; `run(n)` times n steps."""

  def __init__(self, name: str, batches: list[dict[str, np.ndarray]], learning_rate: float, weight_decay: float,
               seed: int = 0):
    build, loss_fn = MODELS[name]
    model = build()
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    self.batches = [(jnp.asarray(b["x"]), jnp.asarray(b["y"])) for b in batches]
    params = model.init(jax.random.key(seed), self.batches[0][0], train=False)["params"]
    self.num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, y, key):
      def loss(p):
        return loss_fn(model.apply({"params": p}, x, train=True, rngs={"dropout": key}), y)
      value, grads = jax.value_and_grad(loss)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, value

    self.key = jax.random.key(seed + 1)
    self.state = (params, tx.init(params))
    t = time.perf_counter()
    self.compiled = step.lower(*self.state, *self.batches[0], self.key).compile()
    self.compile_s = time.perf_counter() - t
    self.done, self.loss = 0, float("nan")

  def run(self, n: int) -> float:
    """Runs `n` steps (dispatching all, then one wait); returns the seconds they took."""
    t = time.perf_counter()
    for _ in range(n):
      params, opt_state, loss = self.compiled(*self.state, *self.batches[self.done % 2], self.key)
      self.state = (params, opt_state)
      self.done += 1
    jax.block_until_ready(self.state)
    elapsed = time.perf_counter() - t
    self.loss = float(loss)
    return elapsed
