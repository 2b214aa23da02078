"""Metrics against scikit-learn, including edge cases, and batch accumulation == whole-dataset values."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from model_lib.train import metrics
from model_lib.train.tasks import Binary, Classification, Regression


def _cm(y, p, c):
  return np.asarray(metrics.confusion_matrix(jnp.asarray(y), jnp.asarray(p), c))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_recall_f1_match_sklearn(seed, average):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 4, 200)
  p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
  p[p == 3] = 2  # Class 3 is never predicted.
  cm = _cm(y, p, 4)
  np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=range(4)))
  got = metrics.precision_recall_f1(cm, average)
  want = skm.precision_recall_fscore_support(y, p, average=average, zero_division=0)[:3]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert metrics.accuracy_from_confusion(cm) == pytest.approx(skm.accuracy_score(y, p))


def test_macro_average_skips_classes_absent_from_labels_and_predictions():
  y, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
  cm = _cm(y, p, 5)  # Classes 2-4 appear nowhere.
  want = skm.precision_recall_fscore_support(y, p, average="macro", zero_division=0)[:3]
  np.testing.assert_allclose(metrics.precision_recall_f1(cm, "macro"), want)


def test_binary_metrics_match_sklearn():
  rng = np.random.default_rng(3)
  y = rng.integers(0, 2, 101)
  p = np.where(rng.random(101) < 0.7, y, 1 - y)
  got = metrics.precision_recall_f1(_cm(y, p, 2), "binary")
  np.testing.assert_allclose(got, skm.precision_recall_fscore_support(y, p, average="binary")[:3])


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, 300)
  score = np.round(rng.random(300) + 0.3 * y, 1)  # Rounding creates many ties.
  assert metrics.roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


def test_roc_auc_single_class_is_nan():
  assert np.isnan(metrics.roc_auc(np.ones(5), np.linspace(0, 1, 5)))


def test_top_k_correct_matches_sklearn():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(64, 10)).astype(np.float32)
  y = rng.integers(0, 10, 64)
  got = float(metrics.top_k_correct(jnp.asarray(logits), jnp.asarray(y), 3)) / 64
  assert got == pytest.approx(skm.top_k_accuracy_score(y, logits, k=3, labels=range(10)))


def test_regression_metrics_match_sklearn():
  rng = np.random.default_rng(0)
  y = rng.normal(size=50)
  p = y + rng.normal(scale=0.5, size=50)
  got = metrics.regression_metrics(y, p)
  assert got["mse"] == pytest.approx(skm.mean_squared_error(y, p))
  assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
  assert got["r2"] == pytest.approx(skm.r2_score(y, p))
  assert np.isnan(metrics.regression_metrics(np.ones(3), np.zeros(3))["r2"])


def _accumulate(task, outputs, y, batch_size):
  stats = None
  for s in range(0, len(y), batch_size):
    b = {"y": jnp.asarray(y[s:s + batch_size])}
    st = task.eval_stats(jnp.asarray(outputs[s:s + batch_size]), b)
    stats = st if stats is None else {k: stats[k] + st[k] for k in st}
  return {k: np.asarray(v) for k, v in stats.items()}


def test_batch_accumulated_metrics_equal_whole_dataset():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(103, 6)).astype(np.float32)
  y = rng.integers(0, 6, 103)
  task = Classification(num_classes=6, top_k=2)
  batched = task.finalize(_accumulate(task, logits, y, 10))
  whole = task.finalize(_accumulate(task, logits, y, 103))
  for k in whole:
    assert batched[k] == pytest.approx(whole[k], rel=1e-6), k
  p = logits.argmax(-1)
  assert batched["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
  assert batched["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro"))
  # Per-batch averaging would be wrong: show the accumulated value is not that.
  per_batch = np.mean([skm.f1_score(y[s:s + 10], p[s:s + 10], average="macro") for s in range(0, 103, 10)])
  assert abs(per_batch - batched["f1_macro"]) > 1e-3


def test_binary_task_finalize_matches_sklearn_and_respects_mask():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=40).astype(np.float32)
  y = rng.integers(0, 2, 40)
  mask = np.ones(40, np.float32)
  mask[-5:] = 0  # Padding rows must not count.
  task = Binary()
  stats = task.eval_stats(jnp.asarray(logits[:, None]), {"y": jnp.asarray(y), "mask": jnp.asarray(mask)})
  scores = np.asarray(task.scores(jnp.asarray(logits[:, None])))[:35]
  out = task.finalize({k: np.asarray(v) for k, v in stats.items()}, y[:35], scores)
  p = (logits[:35] > 0).astype(int)
  assert out["accuracy"] == pytest.approx(skm.accuracy_score(y[:35], p))
  assert out["f1"] == pytest.approx(skm.f1_score(y[:35], p))
  assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:35], logits[:35]))


def test_regression_task_reports_original_units():
  task = Regression(target_mean=100.0, target_std=10.0)
  y_std = np.array([0.0, 1.0, -1.0])
  p_std = np.array([0.5, 1.0, -1.5])
  out = task.finalize({"loss_sum": np.float32(0.5), "count": np.float32(3)}, y_std, p_std)
  assert out["mae"] == pytest.approx(skm.mean_absolute_error(100 + 10 * y_std, 100 + 10 * p_std))
