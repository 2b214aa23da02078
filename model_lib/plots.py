"""Figures of a run: learning curves from metrics.jsonl, confusion matrices, ROC curves (PNG files).

Figures are drawn on `matplotlib.figure.Figure` objects (Agg canvas), never through pyplot, so
importing this module changes no global backend and works headless, in threads and in notebooks.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from model_lib.train.writer import read_metrics

SUBPLOT_INCHES = (5.0, 3.5)  # Width, height of one learning-curve panel.
MAX_COLUMNS = 3
DPI = 100
SPLIT_ORDER = ("train", "eval", "test")
NOT_CURVES = ("checkpoint_step",)  # Bookkeeping columns of metrics.jsonl, not metrics.

Series = tuple[np.ndarray, np.ndarray]


def run_names(workdirs: Sequence[str]) -> list[str]:
  """Workdir basenames; the full paths where two basenames collide."""
  paths = [os.path.normpath(w) for w in workdirs]
  bases = [os.path.basename(p) for p in paths]
  return [b if bases.count(b) == 1 else p for b, p in zip(bases, paths)]


def _as_float(v: Any) -> float | None:
  if isinstance(v, bool):
    return None
  try:
    return float(v)  # Also parses the 'nan'/'inf' strings the writer stores for non-finite values.
  except (TypeError, ValueError):
    return None


def learning_curve_data(workdirs: Sequence[str]) -> dict[str, dict[str, dict[str, Series]]]:
  """`{run: {split: {metric: (steps, values)}}}` from each workdir's metrics.jsonl, sorted by step."""
  data = {}
  for name, workdir in zip(run_names(workdirs), workdirs):
    rows = read_metrics(workdir)
    if not rows and not os.path.isdir(workdir):
      raise FileNotFoundError(f"{workdir} is not a directory.")
    points: dict[str, dict[str, dict[int, float]]] = {}
    for row in rows:
      split = points.setdefault(row["split"], {})
      for key, value in row.items():
        x = _as_float(value)
        if key in ("step", "split") or key in NOT_CURVES or x is None:
          continue
        split.setdefault(key, {})[int(row["step"])] = x  # A repeated step keeps its last value.
    data[name] = {
        split: {m: (np.array(sorted(s), np.int64), np.array([s[k] for k in sorted(s)], np.float64))
                for m, s in metrics.items()}
        for split, metrics in points.items()}
  return data


def default_metrics(data: dict[str, dict[str, dict[str, Series]]]) -> list[str]:
  """Metrics logged for both train and eval (e.g. loss, accuracy); else every eval/test metric."""
  def names(split: str) -> set[str]:
    return {m for run in data.values() for m in run.get(split, {})}

  common = names("train") & names("eval")
  chosen = common or (names("eval") | names("test")) or names("train")
  return sorted(chosen, key=lambda m: (m != "loss", m))


def _figure(width: float, height: float):
  from matplotlib.figure import Figure  # Lazy: matplotlib costs ~0.5 s to import.
  return Figure(figsize=(width, height), dpi=DPI)


def _save(fig: Any, out_path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  fig.savefig(out_path, dpi=DPI)


def plot_learning_curves(workdirs: Sequence[str], out_path: str, log_scale: bool = False,
                         metrics: Sequence[str] | None = None) -> list[str]:
  """One panel per metric with each run's train and eval curves and test point; returns the metrics drawn."""
  data = learning_curve_data(workdirs)
  available = sorted({m for run in data.values() for split in run.values() for m in split})
  if not available:
    raise ValueError(f"No metrics found in {', '.join(workdirs)} (no metrics.jsonl rows).")
  metrics = list(metrics) if metrics else default_metrics(data)
  missing = [m for m in metrics if m not in available]
  if missing:
    raise ValueError(f"Metric(s) {missing} not logged by any run; choose from {available}.")
  cols = min(len(metrics), MAX_COLUMNS)
  rows = math.ceil(len(metrics) / cols)
  fig = _figure(SUBPLOT_INCHES[0] * cols, SUBPLOT_INCHES[1] * rows)
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  styles = {"train": dict(linestyle="-", alpha=0.6), "eval": dict(linestyle="--", marker=".")}
  for ax, metric in zip(axes, metrics):
    for i, (run, splits) in enumerate(data.items()):
      color = f"C{i % 10}"
      for split in sorted(splits, key=lambda s: (SPLIT_ORDER + (s,)).index(s)):
        if metric not in splits[split]:
          continue
        steps, values = splits[split][metric]
        label = f"{run} {split}"
        if split == "test":  # One final evaluation: a point, not a curve.
          ax.plot(steps, values, linestyle="none", marker="*", markersize=10, color=color, label=label)
        else:
          ax.plot(steps, values, color=color, label=label, **styles.get(split, dict(linestyle=":")))
    ax.set_title(metric)
    ax.set_xlabel("step")
    if log_scale:
      ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
  for ax in axes[len(metrics):]:
    ax.set_visible(False)
  fig.tight_layout()
  _save(fig, out_path)
  return metrics


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], out_path: str) -> None:
  """Counts (rows: true class, columns: predicted), shaded by the fraction of each true class."""
  cm = np.asarray(cm)
  n = cm.shape[0]
  if cm.shape != (n, n) or len(class_names) != n:
    raise ValueError(f"Confusion matrix of shape {cm.shape} does not match {len(class_names)} class names.")
  size = max(4.0, 0.45 * n + 2.0)
  fig = _figure(size + 1.0, size)
  ax = fig.subplots()
  # Row-normalised shading keeps rare classes readable next to frequent ones.
  frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
  image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
  ax.set_xticks(range(n), labels=list(class_names), rotation=90 if n > 10 else 0)
  ax.set_yticks(range(n), labels=list(class_names))
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  if n <= 30:
    for i in range(n):
      for j in range(n):
        ax.text(j, i, f"{cm[i, j]:g}", ha="center", va="center", fontsize="small",
                color="white" if frac[i, j] > 0.5 else "black")
  ax.set_title(f"Confusion matrix ({cm.sum():g} examples)")
  fig.tight_layout()
  _save(fig, out_path)


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Binary ROC: (fpr, tpr, thresholds), one point per distinct score, starting at (0, 0)."""
  y_true = np.asarray(y_true).astype(bool).ravel()
  y_score = np.asarray(y_score, np.float64).ravel()
  if y_true.all() or not y_true.any():
    raise ValueError("ROC needs both positive and negative examples in y_true.")
  order = np.argsort(-y_score, kind="mergesort")
  score, label = y_score[order], y_true[order]
  last = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]  # Last index of each run of tied scores.
  tps = np.cumsum(label)[last]
  fps = last + 1 - tps
  fpr = np.r_[0.0, fps / fps[-1]]
  tpr = np.r_[0.0, tps / tps[-1]]
  return fpr, tpr, np.r_[np.inf, score[last]]


def auc(x: np.ndarray, y: np.ndarray) -> float:
  """Area under a curve by the trapezoidal rule."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def plot_roc_curve(y_true: np.ndarray, y_score: np.ndarray, out_path: str) -> float:
  """ROC of binary scores (or one-vs-rest curves of (N, C) class scores); returns the (macro) AUC."""
  y_true, y_score = np.asarray(y_true), np.asarray(y_score, np.float64)
  if y_score.ndim == 2 and y_score.shape[1] == 2:
    y_score = y_score[:, 1]
  if y_score.ndim == 1:
    curves = {"positive": roc_curve(y_true, y_score)}
  else:
    curves = {str(c): roc_curve(y_true == c, y_score[:, c]) for c in range(y_score.shape[1])
              if 0 < (y_true == c).sum() < y_true.size}
  aucs = {name: auc(fpr, tpr) for name, (fpr, tpr, _) in curves.items()}
  fig = _figure(5.0, 5.0)
  ax = fig.subplots()
  for name, (fpr, tpr, _) in curves.items():
    ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[name]:.3f})" if len(curves) > 1 else None)
  ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
  mean_auc = float(np.mean(list(aucs.values())))
  ax.set_title(f"ROC, AUC = {mean_auc:.4f}" if len(curves) == 1 else f"ROC one-vs-rest, macro AUC = {mean_auc:.4f}")
  ax.set_xlabel("false positive rate")
  ax.set_ylabel("true positive rate")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.01)
  ax.grid(True, alpha=0.3)
  if len(curves) > 1:
    ax.legend(fontsize="small", loc="lower right")
  fig.tight_layout()
  _save(fig, out_path)
  return mean_auc
