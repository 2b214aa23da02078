"""Model-agnostic importance for tabular models: permutation importance and SHAP values."""

from __future__ import annotations

from typing import Callable

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # (N, D) -> (N,) predictions or scores
Score = Callable[[np.ndarray, np.ndarray], float]  # (y_true, prediction) -> higher is better


def permutation_importance(predict: Predict, x: np.ndarray, y: np.ndarray, score: Score, num_repeats: int = 5,
                           seed: int = 0) -> dict[str, np.ndarray]:
  """Drop in `score` when one feature column is shuffled (Breiman 2001): mean and std over repeats, per feature."""
  rng = np.random.default_rng(seed)
  base = score(y, predict(x))
  drops = np.zeros((x.shape[1], num_repeats))
  for j in range(x.shape[1]):
    for r in range(num_repeats):
      xp = x.copy()
      xp[:, j] = xp[rng.permutation(len(xp)), j]
      drops[j, r] = base - score(y, predict(xp))
  return {"mean": drops.mean(1), "std": drops.std(1), "baseline_score": np.float64(base)}


def shap_values(predict: Predict, background: np.ndarray, x: np.ndarray, seed: int = 0,
                max_evals: int | None = None) -> np.ndarray:
  """SHAP values (N, D) from the `shap` library's model-agnostic explainer over `predict`.

  Uses `shap.explainers.Permutation` with `background` as the masker's data; for each row the values
  sum to predict(x) - E[predict(background)] (up to sampling error).
  """
  import shap  # Optional at import time; a test dependency.

  masker = shap.maskers.Independent(background, max_samples=len(background))
  explainer = shap.explainers.Permutation(predict, masker, seed=seed)
  out = explainer(x, max_evals=max_evals or 2 * x.shape[1] + 1, silent=True)
  return np.asarray(out.values)
