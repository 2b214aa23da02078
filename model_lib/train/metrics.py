"""Metrics from sufficient statistics, so batch-accumulated values equal whole-dataset values.

Device side: `confusion_matrix` and `top_k_correct` return sums that add across batches.
Host side (NumPy, float64): everything derived from those sums, plus ROC-AUC and regression
metrics from collected predictions. Conventions follow scikit-learn: precision/recall/F1 of a
class with no predicted (or no true) examples is 0, and macro averages run over the classes
present in the labels or the predictions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


# ----------------------------------------------------------------------------- device side


def confusion_matrix(labels: jax.Array, preds: jax.Array, num_classes: int,
                     mask: jax.Array | None = None) -> jax.Array:
  """(C, C) counts, rows = true class, columns = predicted class; masked examples count 0."""
  true_1h = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)  # (B, C)
  pred_1h = jax.nn.one_hot(preds, num_classes, dtype=jnp.float32)  # (B, C)
  if mask is not None:
    true_1h = true_1h * mask.astype(jnp.float32)[:, None]
  return true_1h.T @ pred_1h


def top_k_correct(logits: jax.Array, labels: jax.Array, k: int, mask: jax.Array | None = None) -> jax.Array:
  """Number of examples whose label is among the k highest logits (ties broken by index)."""
  _, top = jax.lax.top_k(logits, k)  # (B, k)
  hit = (top == labels[:, None]).any(-1).astype(jnp.float32)
  return hit.sum() if mask is None else (hit * mask.astype(jnp.float32)).sum()


# ----------------------------------------------------------------------------- host side


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def accuracy_from_confusion(cm: np.ndarray) -> float:
  cm = np.asarray(cm, np.float64)
  return float(_safe_div(np.trace(cm), cm.sum()))


def precision_recall_f1(cm: np.ndarray, average: str = "macro", pos_label: int = 1) -> tuple[float, float, float]:
  """Precision, recall and F1 from a confusion matrix; average in {'binary', 'macro', 'micro', 'weighted'}."""
  cm = np.asarray(cm, np.float64)
  tp = np.diag(cm)
  predicted = cm.sum(0)
  actual = cm.sum(1)
  if average == "micro":
    p = r = float(_safe_div(tp.sum(), cm.sum()))
    return p, r, p
  precision = _safe_div(tp, predicted)
  recall = _safe_div(tp, actual)
  f1 = _safe_div(2 * precision * recall, precision + recall)
  if average == "binary":
    return float(precision[pos_label]), float(recall[pos_label]), float(f1[pos_label])
  present = (predicted + actual) > 0
  if average == "macro":
    return tuple(float(v[present].mean()) if present.any() else 0.0 for v in (precision, recall, f1))
  if average == "weighted":
    w = _safe_div(actual, actual.sum())
    return float((precision * w).sum()), float((recall * w).sum()), float((f1 * w).sum())
  raise ValueError(f"Unknown average '{average}'; choose binary, macro, micro or weighted.")


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
  """Binary ROC-AUC via the Mann-Whitney U statistic with average ranks for ties (equals scikit-learn).

  Returns NaN when only one class is present (AUC is undefined there).
  """
  y_true = np.asarray(y_true).astype(bool).ravel()
  y_score = np.asarray(y_score, np.float64).ravel()
  n_pos = int(y_true.sum())
  n_neg = y_true.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(y_score, kind="mergesort")
  sorted_scores = y_score[order]
  ranks = np.empty(y_score.size, np.float64)
  # Average rank within each run of tied scores.
  boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
  starts = np.concatenate([[0], boundaries])
  ends = np.concatenate([boundaries, [y_score.size]])
  for s, e in zip(starts, ends):
    ranks[order[s:e]] = (s + e + 1) / 2.0  # mean of 1-based ranks s+1..e
  u = ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
  """MSE, RMSE, MAE and R² (1 - SSE/SST; NaN when the targets are constant)."""
  y_true = np.asarray(y_true, np.float64).ravel()
  y_pred = np.asarray(y_pred, np.float64).ravel()
  err = y_pred - y_true
  sse = float((err ** 2).sum())
  sst = float(((y_true - y_true.mean()) ** 2).sum())
  mse = sse / max(y_true.size, 1)
  return {
      "mse": mse,
      "rmse": float(np.sqrt(mse)),
      "mae": float(np.abs(err).mean()),
      "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
  }
