"""Learning-curve data and figures from fixture metrics.jsonl files; ROC against scikit-learn."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from model_lib import plots
from model_lib.train.metrics import roc_auc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(path, lr: float = 1e-3, steps: int = 40, resumed: bool = False) -> str:
  """A fake workdir: train rows every 10 steps, eval every 20, one test row; optionally a repeated step."""
  os.makedirs(path, exist_ok=True)
  rows = []
  for s in range(10, steps + 1, 10):
    rows.append({"step": s, "split": "train", "loss": 2.0 / s / lr / 1000, "accuracy": 1 - 1 / s,
                 "learning_rate": lr, "grad_norm": "nan" if s == 20 else 1.0})
    if s % 20 == 0:
      rows.append({"step": s, "split": "eval", "loss": 3.0 / s, "accuracy": 1 - 2 / s, "f1_macro": 0.5})
  if resumed:  # Rows logged again after a resume replace the earlier ones.
    rows.append({"step": steps, "split": "train", "loss": 0.123, "accuracy": 0.9, "learning_rate": lr,
                 "grad_norm": 1.0})
  rows.append({"step": steps, "split": "test", "loss": 0.2, "accuracy": 0.95, "checkpoint_step": 20})
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(path)


def png_size(path: str) -> tuple[int, int]:
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n"
  return struct.unpack(">II", head[16:24])


def expected_size(num_panels: int) -> tuple[int, int]:
  cols = min(num_panels, plots.MAX_COLUMNS)
  rows = -(-num_panels // cols)
  return round(plots.SUBPLOT_INCHES[0] * cols * plots.DPI), round(plots.SUBPLOT_INCHES[1] * rows * plots.DPI)


@pytest.fixture
def runs(tmp_path):
  return [write_run(tmp_path / "a", lr=1e-3), write_run(tmp_path / "b", lr=1e-2, steps=60, resumed=True)]


def test_learning_curve_data_has_every_run_split_and_metric(runs):
  data = plots.learning_curve_data(runs)
  assert list(data) == ["a", "b"]
  for run in data.values():
    assert set(run) == {"train", "eval", "test"}
    assert set(run["train"]) == {"loss", "accuracy", "learning_rate", "grad_norm"}
    assert set(run["eval"]) == {"loss", "accuracy", "f1_macro"}
    assert "checkpoint_step" not in run["test"]
  steps, values = data["a"]["eval"]["loss"]
  np.testing.assert_array_equal(steps, [20, 40])
  np.testing.assert_allclose(values, [3.0 / 20, 3.0 / 40])
  assert np.isnan(data["a"]["train"]["grad_norm"][1][1])  # 'nan' strings of the writer become NaN.
  steps, values = data["b"]["train"]["loss"]
  np.testing.assert_array_equal(steps, [10, 20, 30, 40, 50, 60])  # The repeated step 60 appears once...
  assert values[-1] == 0.123  # ...with its last value.


def test_run_names_disambiguate_equal_basenames(tmp_path):
  a, b = write_run(tmp_path / "x" / "run"), write_run(tmp_path / "y" / "run")
  names = list(plots.learning_curve_data([a, b]))
  assert len(set(names)) == 2 and all(n.endswith("run") for n in names)
  assert plots.run_names([str(tmp_path / "z") + "/"]) == ["z"]


def test_plot_learning_curves_default_metrics_and_size(runs, tmp_path):
  out = str(tmp_path / "figs" / "curves.png")
  drawn = plots.plot_learning_curves(runs, out)
  assert drawn == ["loss", "accuracy"]  # Logged for both train and eval.
  assert png_size(out) == expected_size(2)


def test_plot_learning_curves_chosen_metrics_log_scale(runs, tmp_path):
  out = str(tmp_path / "curves.png")
  drawn = plots.plot_learning_curves(runs, out, log_scale=True, metrics=["loss", "accuracy", "f1_macro", "grad_norm"])
  assert drawn == ["loss", "accuracy", "f1_macro", "grad_norm"]
  assert png_size(out) == expected_size(4)


def test_plot_learning_curves_unknown_metric_names_choices(runs, tmp_path):
  with pytest.raises(ValueError, match=r"\['lss'\].*'loss'"):
    plots.plot_learning_curves(runs, str(tmp_path / "c.png"), metrics=["lss"])
  with pytest.raises(FileNotFoundError):
    plots.plot_learning_curves([str(tmp_path / "missing")], str(tmp_path / "c.png"))


def test_plot_metrics_cli(runs, tmp_path):
  out = str(tmp_path / "cli.png")
  proc = subprocess.run([sys.executable, "-m", "tools.plot_metrics", *runs, "--out", out, "--log_scale",
                         "--metrics", "loss,f1_macro"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert "loss, f1_macro" in proc.stdout
  assert png_size(out) == expected_size(2)


def test_roc_curve_matches_sklearn_and_rank_auc(tmp_path):
  sk = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 300)
  score = np.round(y + rng.normal(0, 1, 300), 1)  # Rounded: many tied scores.
  fpr, tpr, _ = plots.roc_curve(y, score)
  sk_fpr, sk_tpr, _ = sk.roc_curve(y, score, drop_intermediate=False)
  np.testing.assert_allclose(fpr, sk_fpr)
  np.testing.assert_allclose(tpr, sk_tpr)
  out = str(tmp_path / "roc.png")
  area = plots.plot_roc_curve(y, score, out)
  assert area == pytest.approx(roc_auc(y, score), abs=1e-12)
  assert area == pytest.approx(sk.roc_auc_score(y, score), abs=1e-12)
  assert png_size(out) == (500, 500)


def test_roc_multiclass_and_single_class(tmp_path):
  rng = np.random.default_rng(1)
  y = rng.integers(0, 3, 200)
  scores = rng.normal(size=(200, 3))
  scores[np.arange(200), y] += 2.0
  area = plots.plot_roc_curve(y, scores, str(tmp_path / "roc3.png"))
  assert area == pytest.approx(np.mean([roc_auc(y == c, scores[:, c]) for c in range(3)]))
  with pytest.raises(ValueError, match="both positive and negative"):
    plots.roc_curve(np.ones(5), np.arange(5.0))


def test_plot_confusion_matrix(tmp_path):
  cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
  out = str(tmp_path / "cm.png")
  plots.plot_confusion_matrix(cm, ["a", "b", "c"], out)
  width, height = png_size(out)
  assert width > height > 300
  with pytest.raises(ValueError, match="3 class names"):
    plots.plot_confusion_matrix(np.eye(4), ["a", "b", "c"], out)
