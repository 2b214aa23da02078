"""Text in, text out: sample from a trained language model (GPT or LSTM) through its tokenizer."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from model_lib.generate import generate


def sample_ids(model: nn.Module, params: Any, prompt_ids: np.ndarray, num_tokens: int, rng: jax.Array, *,
               temperature: float = 1.0, top_k: int = 0, greedy: bool = False) -> np.ndarray:
  """Continues `prompt_ids` (P,) by `num_tokens` tokens; past a GPT's context, decodes in windows.

  A model with a fixed context (`max_len`) continues from the last `max_len // 2` tokens once the
  KV cache is full (re-prefilled each window), so any number of tokens can be sampled; each window's
  decode step reuses one compiled executable.
  """
  out = np.asarray(prompt_ids, np.int32)[None]  # (1, P)
  max_len = getattr(model, "max_len", None)
  if max_len is None:
    return np.asarray(generate(model, params, out, num_tokens, rng, temperature=temperature, top_k=top_k,
                               greedy=greedy))[0]
  if out.shape[1] >= max_len:
    out = out[:, -(max_len // 2):]
  produced, window = 0, 0
  while produced < num_tokens:
    context = out if window == 0 else out[:, -(max_len // 2):]
    n = min(num_tokens - produced, max_len - context.shape[1])
    new = np.asarray(generate(model, params, jnp.asarray(context), n, jax.random.fold_in(rng, window),
                              temperature=temperature, top_k=top_k, greedy=greedy))[:, context.shape[1]:]
    out = np.concatenate([out, new], axis=1)
    produced, window = produced + n, window + 1
  return out[0]


def sample_text(model: nn.Module, params: Any, tokenizer: Any, prompt: str, num_tokens: int, rng: jax.Array,
                **kwargs: Any) -> str:
  """The prompt followed by `num_tokens` sampled tokens, decoded to text."""
  prompt_ids = np.asarray(tokenizer.encode(prompt), np.int32)
  if prompt_ids.size == 0:
    raise ValueError(f"The prompt {prompt!r} encodes to no tokens; use characters the tokenizer knows.")
  return tokenizer.decode(sample_ids(model, params, prompt_ids, num_tokens, rng, **kwargs))


def sample_from_workdir(workdir: str, prompt: str, num_tokens: int, seed: int = 0, **kwargs: Any) -> str:
  """Samples from the best (else latest) checkpoint of an LM run, using only files in `workdir`."""
  import os

  from model_lib.checkpoint_inspect import find_checkpoint, restore_raw
  from model_lib.config import load_run_config
  from model_lib.data.text import load_tokenizer
  from model_lib.models import build_model
  from model_lib.train.trainer import TOKENIZER_FILE

  config = load_run_config(workdir)
  tokenizer_path = os.path.join(workdir, TOKENIZER_FILE)
  if not os.path.exists(tokenizer_path):
    raise FileNotFoundError(f"No {TOKENIZER_FILE} in '{workdir}': sampling needs a language-model run.")
  tokenizer = load_tokenizer(tokenizer_path)
  model = build_model(config.model, num_outputs=tokenizer.vocab_size, vocab_size=tokenizer.vocab_size)
  found = find_checkpoint(workdir)
  if found is None:
    raise FileNotFoundError(f"No checkpoint under '{workdir}'; train first.")
  directory, steps = found
  params = jax.tree.map(jnp.asarray, restore_raw(directory, steps[-1], keys=("params",))["params"])
  return sample_text(model, params, tokenizer, prompt, num_tokens, jax.random.key(seed), **kwargs)
