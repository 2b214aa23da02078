"""BERT-style masking for masked-language-model pretraining (Devlin et al. 2019)."""

from __future__ import annotations

import numpy as np

from model_lib.data.text import PAD

MASK_TOKEN = "<mask>"


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, mask_id: int, vocab_size: int, prob: float = 0.15,
                num_special: int = 2) -> dict[str, np.ndarray]:
  """{'x', 'y', 'weights'} for ids (B, T): each real token is chosen with `prob`; a chosen token becomes
  MASK (80%), a random regular token (10%) or stays (10%); y = original ids, weights = 1 where chosen."""
  real = ids != PAD
  chosen = real & (rng.random(ids.shape) < prob)
  action = rng.random(ids.shape)
  random_tokens = rng.integers(num_special, vocab_size, ids.shape)
  x = np.where(chosen & (action < 0.8), mask_id, ids)
  x = np.where(chosen & (action >= 0.8) & (action < 0.9), random_tokens, x)
  return {"x": x.astype(np.int32), "y": ids.astype(np.int32), "weights": chosen.astype(np.float32)}


def mask_batch(batch: dict[str, np.ndarray], rng: np.random.Generator, mask_id: int,
               vocab_size: int) -> dict[str, np.ndarray]:
  """Grain `random_map` transform: masks a training batch afresh every time it is drawn."""
  return {**batch, **mask_tokens(batch["x"], rng, mask_id, vocab_size)}
