"""Tasks tie a model's outputs to a loss, training metrics and evaluation metrics.

Every task's `loss(outputs, batch)` is the scalar mean loss of the batch (honouring `mask`).
A task is chosen by the dataset (`DatasetInfo.task`) and owns everything label-specific, so the
train/eval steps stay generic. Evaluation is split in two halves: `eval_stats` runs inside the
jitted eval step and returns per-batch *sums* (masked), `finalize` runs on the host once over the
summed statistics (and, where a task needs them, the collected per-example scores).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from model_lib.registry import Registry
from model_lib.train import losses, metrics

TASKS = Registry("task")
Batch = dict[str, jax.Array]


def _mask(batch: Batch, like: jax.Array) -> jax.Array:
  return batch["mask"].astype(jnp.float32) if "mask" in batch else jnp.ones(like.shape[:1], jnp.float32)


@TASKS.register("classification")
@dataclasses.dataclass(frozen=True)
class Classification:
  """Multi-class classification with integer labels; outputs are logits (B, C)."""

  num_classes: int
  label_smoothing: float = 0.0
  top_k: int = 5
  needs_scores: bool = False
  loss_name: str = "softmax_cross_entropy"

  def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    ce = losses.softmax_cross_entropy(outputs, batch["y"], self.label_smoothing)
    if "lam" in batch:  # Mixup: lam * CE(y_a) + (1 - lam) * CE(y_b).
      ce = batch["lam"] * ce + (1 - batch["lam"]) * losses.softmax_cross_entropy(outputs, batch["y_b"],
                                                                                 self.label_smoothing)
    return losses.weighted_mean(ce, batch.get("mask"))

  def train_metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    return {"accuracy": losses.weighted_mean((outputs.argmax(-1) == batch["y"]).astype(jnp.float32), batch.get("mask"))}

  def eval_stats(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    m = _mask(batch, outputs)
    stats = {
        "loss_sum": (losses.softmax_cross_entropy(outputs, batch["y"]) * m).sum(),
        "count": m.sum(),
        "confusion": metrics.confusion_matrix(batch["y"], outputs.argmax(-1), self.num_classes, m),
    }
    if self.num_classes > self.top_k:
      stats["top_k_correct"] = metrics.top_k_correct(outputs, batch["y"], self.top_k, m)
    return stats

  def scores(self, outputs: jax.Array) -> jax.Array:
    return jax.nn.softmax(outputs, axis=-1)

  def finalize(self, stats: dict[str, np.ndarray], y_true: np.ndarray | None = None,
               y_score: np.ndarray | None = None) -> dict[str, float]:
    cm = np.asarray(stats["confusion"])
    p, r, f1 = metrics.precision_recall_f1(cm, "macro")
    out = {
        "loss": float(stats["loss_sum"] / max(float(stats["count"]), 1.0)),
        "accuracy": metrics.accuracy_from_confusion(cm),
        "precision_macro": p,
        "recall_macro": r,
        "f1_macro": f1,
        "f1_micro": metrics.precision_recall_f1(cm, "micro")[2],
    }
    if "top_k_correct" in stats:
      out[f"top_{self.top_k}_accuracy"] = float(stats["top_k_correct"] / max(float(stats["count"]), 1.0))
    return out


@TASKS.register("binary")
@dataclasses.dataclass(frozen=True)
class Binary:
  """Binary classification with 0/1 labels; outputs are one logit per example (B, 1) or (B,)."""

  needs_scores: bool = True  # ROC-AUC needs every score.
  loss_name: str = "sigmoid_binary_cross_entropy"

  def _logits(self, outputs: jax.Array) -> jax.Array:
    return outputs.reshape(outputs.shape[0])

  def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    bce = losses.sigmoid_binary_cross_entropy(self._logits(outputs), batch["y"])
    if "lam" in batch:  # Mixup: lam * BCE(y_a) + (1 - lam) * BCE(y_b).
      bce = batch["lam"] * bce + (1 - batch["lam"]) * losses.sigmoid_binary_cross_entropy(self._logits(outputs),
                                                                                         batch["y_b"])
    return losses.weighted_mean(bce, batch.get("mask"))

  def train_metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    correct = ((self._logits(outputs) > 0) == (batch["y"] > 0)).astype(jnp.float32)
    return {"accuracy": losses.weighted_mean(correct, batch.get("mask"))}

  def eval_stats(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    logits = self._logits(outputs)
    m = _mask(batch, logits)
    return {
        "loss_sum": (losses.sigmoid_binary_cross_entropy(logits, batch["y"]) * m).sum(),
        "count": m.sum(),
        "confusion": metrics.confusion_matrix(batch["y"].astype(jnp.int32), (logits > 0).astype(jnp.int32), 2, m),
    }

  def scores(self, outputs: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(self._logits(outputs))

  def finalize(self, stats: dict[str, np.ndarray], y_true: np.ndarray | None = None,
               y_score: np.ndarray | None = None) -> dict[str, float]:
    cm = np.asarray(stats["confusion"])
    p, r, f1 = metrics.precision_recall_f1(cm, "binary")
    out = {
        "loss": float(stats["loss_sum"] / max(float(stats["count"]), 1.0)),
        "accuracy": metrics.accuracy_from_confusion(cm),
        "precision": p,
        "recall": r,
        "f1": f1,
    }
    if y_true is not None and y_score is not None:
      out["roc_auc"] = metrics.roc_auc(y_true, y_score)
    return out


@TASKS.register("regression")
@dataclasses.dataclass(frozen=True)
class Regression:
  """Regression with real targets; outputs (B, 1) or (B, K); the loss is the mean squared error."""

  target_mean: float = 0.0  # Targets are standardised for training; metrics use original units.
  target_std: float = 1.0
  needs_scores: bool = True  # R² is computed in float64 on the host from every prediction.
  loss_name: str = "mean_squared_error"

  def original_units(self, y: np.ndarray) -> np.ndarray:
    return np.asarray(y, np.float64) * self.target_std + self.target_mean

  def _preds(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    return outputs.reshape(batch["y"].shape)

  def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    return losses.weighted_mean(losses.squared_error(self._preds(outputs, batch), batch["y"]), batch.get("mask"))

  def train_metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    err = jnp.abs(self._preds(outputs, batch) - batch["y"]).reshape(outputs.shape[0], -1).mean(-1)
    return {"mae": losses.weighted_mean(err, batch.get("mask"))}

  def eval_stats(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    m = _mask(batch, outputs)
    return {"loss_sum": (losses.squared_error(self._preds(outputs, batch), batch["y"]) * m).sum(), "count": m.sum()}

  def scores(self, outputs: jax.Array) -> jax.Array:
    return outputs[..., 0] if outputs.ndim == 2 and outputs.shape[-1] == 1 else outputs

  def finalize(self, stats: dict[str, np.ndarray], y_true: np.ndarray | None = None,
               y_score: np.ndarray | None = None) -> dict[str, float]:
    out = {"loss": float(stats["loss_sum"] / max(float(stats["count"]), 1.0))}
    if y_true is not None and y_score is not None:
      out.update(metrics.regression_metrics(self.original_units(y_true), self.original_units(y_score)))
    return out


def _token_weights(batch: Batch, like: jax.Array) -> jax.Array:
  """(B, T) weights of real target tokens, times the (B,) padding mask of evaluation batches."""
  w = batch["weights"].astype(jnp.float32) if "weights" in batch else jnp.ones(like.shape[:2], jnp.float32)
  return w * batch["mask"].astype(jnp.float32)[:, None] if "mask" in batch else w


@TASKS.register("lm")
@dataclasses.dataclass(frozen=True)
class LanguageModel:
  """Next-token prediction: logits (B, T, V), targets `y` (B, T), `weights` (B, T) marking real targets.

  The loss is the mean cross-entropy per real target token (padding never counts); evaluation
  reports that mean, its perplexity and token accuracy.
  """

  vocab_size: int
  label_smoothing: float = 0.0
  needs_scores: bool = False

  def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    # Mean over real target tokens (not over examples), so short sequences are not up-weighted.
    ce = losses.softmax_cross_entropy(outputs, batch["y"], self.label_smoothing)  # (B, T)
    return losses.weighted_mean(ce, _token_weights(batch, outputs))

  def train_metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    w = _token_weights(batch, outputs)
    correct = (outputs.argmax(-1) == batch["y"]).astype(jnp.float32)
    return {"accuracy": (correct * w).sum() / jnp.maximum(w.sum(), 1e-12)}

  def eval_stats(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    w = _token_weights(batch, outputs)
    ce = losses.softmax_cross_entropy(outputs, batch["y"])
    return {"loss_sum": (ce * w).sum(), "count": w.sum(),
            "correct": ((outputs.argmax(-1) == batch["y"]).astype(jnp.float32) * w).sum()}

  def scores(self, outputs: jax.Array) -> jax.Array:
    return outputs.argmax(-1)

  def finalize(self, stats: dict[str, np.ndarray], y_true: np.ndarray | None = None,
               y_score: np.ndarray | None = None) -> dict[str, float]:
    count = max(float(stats["count"]), 1.0)
    loss = float(stats["loss_sum"]) / count
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "accuracy": float(stats["correct"]) / count}


@TASKS.register("mlm")
@dataclasses.dataclass(frozen=True)
class MaskedLM(LanguageModel):
  """Masked-token prediction: same arrays as `lm`, `weights` marks the masked positions."""


def build_task(info: Any, label_smoothing: float = 0.0):
  """The task for a dataset (`DatasetInfo.task`), given the dataset facts its constructor asks for."""
  cls = TASKS.get(info.task, key="task")
  facts = {"num_classes": info.num_classes, "label_smoothing": label_smoothing,
           "target_mean": info.target_mean, "target_std": info.target_std, "vocab_size": info.num_outputs}
  fields = {f.name for f in dataclasses.fields(cls) if f.init}
  return cls(**{k: v for k, v in facts.items() if k in fields})
