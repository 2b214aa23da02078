"""Autoregressive sampling from `gpt` (KV cache) and `lstm_lm` (carried LSTM state).

A model decodes when called with `decode=True` and a mutable 'cache' collection: each call consumes the next
tokens of the sequence (the whole prompt once, then one token per step) and returns their logits. The cache has a
fixed size (the model's `max_len` for a KV cache), so the jitted decode step compiles once per model and batch
size, whatever the prompt length or number of new tokens.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Cache = Any


def init_cache(model: nn.Module, batch_size: int) -> Cache:
  """A zero 'cache' collection for `batch_size` sequences (shapes via `jax.eval_shape`; no parameters built)."""
  if "decode" not in inspect.signature(type(model).__call__).parameters:
    raise ValueError(f"Model {type(model).__name__} cannot decode step by step (its __call__ has no `decode`).")
  length = getattr(model, "max_len", 1)  # KV caches are sized by the init length; LSTM carries are not.
  tokens = jnp.zeros((batch_size, length), jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, decode=True))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), nn.meta.unbox(shapes["cache"]))


def sample_logits(logits: jax.Array, rng: jax.Array, temperature: float | jax.Array = 1.0, top_k: int = 0,
                  greedy: bool = False) -> jax.Array:
  """Next tokens (B,) int32 from logits (B, V): argmax, or a sample of softmax(logits / temperature) [top-k]."""
  if greedy:
    return logits.argmax(-1).astype(jnp.int32)
  logits = logits.astype(jnp.float32) / temperature
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # (B, 1)
    logits = jnp.where(logits >= kth, logits, -jnp.inf)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


_sample_jit = jax.jit(sample_logits, static_argnames=("top_k", "greedy"))


@functools.partial(jax.jit, static_argnames=("model",))
def prefill(model: nn.Module, params: Any, cache: Cache, tokens: jax.Array) -> tuple[jax.Array, Cache]:
  """Feeds a prompt (B, P) through the model; returns the last position's logits (B, V) and the filled cache."""
  logits, updates = model.apply({"params": params, "cache": cache}, tokens, decode=True, mutable=["cache"])
  return logits[:, -1], updates["cache"]


@functools.partial(jax.jit, static_argnames=("model", "top_k", "greedy"))
def decode_step(model: nn.Module, params: Any, cache: Cache, logits: jax.Array, rng: jax.Array,
                temperature: jax.Array, top_k: int = 0,
                greedy: bool = False) -> tuple[jax.Array, jax.Array, Cache]:
  """Samples the next token from `logits` (B, V) and feeds it; returns (token (B,), its logits (B, V), cache)."""
  token = sample_logits(logits, rng, temperature, top_k, greedy)
  next_logits, updates = model.apply({"params": params, "cache": cache}, token[:, None], decode=True,
                                     mutable=["cache"])
  return token, next_logits[:, -1], updates["cache"]


def generate(model: nn.Module, params: Any, prompt: jax.Array, num_tokens: int, rng: jax.Array, *,
             temperature: float = 1.0, top_k: int = 0, greedy: bool = False) -> jax.Array:
  """Continues each prompt (B, P) int32 (no padding) by `num_tokens` tokens -> (B, P + num_tokens) int32.

  Deterministic given `rng` (step t samples with `fold_in(rng, t)`); `top_k=0` samples from the whole vocabulary.
  """
  prompt = jnp.asarray(prompt, jnp.int32)
  b, p = prompt.shape
  max_len = getattr(model, "max_len", None)
  if max_len is not None and p + num_tokens > max_len:
    raise ValueError(f"prompt length {p} + num_tokens {num_tokens} exceeds the model's max_len {max_len}.")
  if num_tokens <= 0:
    return prompt
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0 (use greedy=True for argmax decoding), got {temperature}.")
  temperature = jnp.float32(temperature)
  logits, cache = prefill(model, params, init_cache(model, b), prompt)
  tokens = []
  for t in range(num_tokens - 1):
    token, logits, cache = decode_step(model, params, cache, logits, jax.random.fold_in(rng, t), temperature,
                                       top_k=top_k, greedy=greedy)
    tokens.append(token)
  # The last token is only sampled: feeding it to the model would be wasted work.
  last_rng = jax.random.fold_in(rng, num_tokens - 1)
  tokens.append(_sample_jit(logits, last_rng, temperature, top_k=top_k, greedy=greedy))
  return jnp.concatenate([prompt, jnp.stack(tokens, axis=1)], axis=1)  # (B, P + num_tokens)
