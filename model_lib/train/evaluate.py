"""Evaluation over a whole split: every example exactly once, statistics summed on device."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from model_lib.data.pipeline import eval_batches
from model_lib.train.step import add_stats


def evaluate_split(eval_step: Callable, state: Any, arrays: dict[str, np.ndarray], batch_size: int, task: Any,
                   collect_scores: bool = False) -> tuple[dict[str, float], np.ndarray | None, np.ndarray | None]:
  """Returns (metrics, y_true, y_score); the scores are gathered only if the task or the caller needs them."""
  want_scores = collect_scores or task.needs_scores
  stats, scores, masks = None, [], []
  for batch in eval_batches(arrays, batch_size):
    out = eval_step(state, batch)
    stats = add_stats(stats, out["stats"])
    if want_scores:
      scores.append(out["scores"])
      masks.append(batch["mask"])
  stats = jax.device_get(stats)
  y_true = y_score = None
  if want_scores:
    keep = np.concatenate(masks).astype(bool)
    y_score = np.concatenate(jax.device_get(scores))[keep]
    y_true = np.asarray(arrays["y"])
  return task.finalize(stats, y_true, y_score), y_true, y_score
