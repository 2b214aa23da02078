"""Cross-validation: fold datasets partition the pool; the report's mean/std equal NumPy's over the folds."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import breast_cancer_logreg
from model_lib.crossval import cross_validate, fold_datasets, summarize
from model_lib.data import load_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fold_datasets_partition_train_plus_val_and_stratify():
  c = breast_cancer_logreg.get_config()
  ds = load_dataset(c.data)
  pool_n = ds.num_examples("train") + ds.num_examples("val")
  folds = fold_datasets(ds, 4, seed=0)
  held = np.concatenate([f.split("test")["x"] for f in folds])
  assert len(held) == pool_n
  assert len(np.unique(held, axis=0)) == len(np.unique(np.concatenate(
      [ds.split("train")["x"], ds.split("val")["x"]]), axis=0))  # Every pooled example is held out exactly once.
  for f in folds:
    assert f.num_examples("train") + f.num_examples("test") == pool_n
    ratio = f.split("test")["y"].mean()
    assert abs(ratio - np.concatenate([ds.split("train")["y"], ds.split("val")["y"]]).mean()) < 0.02


def test_summarize_matches_numpy():
  fold_metrics = [{"accuracy": 0.9, "loss": 0.3}, {"accuracy": 0.8, "loss": 0.5}, {"accuracy": 0.85, "loss": 0.4}]
  out = summarize(fold_metrics)
  assert out["accuracy"]["mean"] == pytest.approx(0.85)
  assert out["accuracy"]["std"] == pytest.approx(np.std([0.9, 0.8, 0.85], ddof=1))


@pytest.mark.slow
def test_cross_validate_writes_report(tmp_path):
  c = breast_cancer_logreg.get_config()
  c.train.num_epochs = 5
  report = cross_validate(c, str(tmp_path), folds=3, show_progress=False)
  with open(tmp_path / "crossval.json") as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(report))
  assert {"accuracy", "f1", "roc_auc"} <= set(saved["metrics"])
  for i in range(3):
    with open(tmp_path / f"fold_{i}" / "summary.json") as f:
      assert json.load(f)["test"]["accuracy"] == pytest.approx(saved["metrics"]["accuracy"]["values"][i])
  assert saved["metrics"]["accuracy"]["mean"] > 0.9


def test_data_benchmark_prints_json(data_dir):
  result = subprocess.run([sys.executable, "-m", "tools.data_benchmark", "--config=experiments/configs/mnist_cnn.py",
                           "--batches=20", "--warmup=2"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MODEL_LIB_DATA_DIR": data_dir})
  assert result.returncode == 0, result.stderr[-1000:]
  out = json.loads(result.stdout)
  assert out["batches"] == 20 and out["batch_size"] == 128
  assert out["examples_per_sec"] == pytest.approx(out["batches_per_sec"] * 128)
