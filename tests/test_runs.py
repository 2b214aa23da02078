"""compare_runs: config differences and final/best/test metrics as a markdown table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from model_lib import runs
from model_lib.config import base_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(path, lr: float, hidden: tuple[int, ...], eval_losses: list[float], eval_accs: list[float]) -> str:
  """A fake finished workdir with config.json, metrics.jsonl and summary.json."""
  os.makedirs(path)
  config = base_config()
  config.model.hidden_sizes = hidden
  config.optimizer.learning_rate = lr
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  rows = []
  for i, (loss, acc) in enumerate(zip(eval_losses, eval_accs)):
    step = 10 * (i + 1)
    rows.append({"step": step, "split": "train", "loss": 1.0 / step, "accuracy": acc})
    rows.append({"step": step, "split": "eval", "loss": loss, "accuracy": acc})
  final = 10 * len(eval_losses)
  test = {"loss": 0.5, "accuracy": max(eval_accs)}
  rows.append({"step": final, "split": "test", **test, "checkpoint_step": 10})
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  with open(os.path.join(path, "summary.json"), "w") as f:
    json.dump({"step": final, "checkpoint_step": 10, "test": test}, f)
  return str(path)


@pytest.fixture
def two_runs(tmp_path):
  a = write_run(tmp_path / "lr_small", 1e-3, (64, 32), [0.9, 0.4, 0.6], [0.7, 0.8, 0.75])
  b = write_run(tmp_path / "lr_big", 1e-2, (128,), [0.5, 0.7, 0.3], [0.6, 0.9, 0.85])
  return a, b


def _row(table: str, label: str) -> list[str]:
  for line in table.splitlines():
    cells = [c.strip() for c in line.strip("|").split("|")]
    if cells[0] == label:
      return cells[1:]
  raise AssertionError(f"no row {label!r} in\n{table}")


def test_config_differences_lists_only_changed_keys():
  a = runs.flatten({"seed": 0, "model": {"hidden_sizes": [64]}, "optimizer": {"learning_rate": 0.1}})
  b = runs.flatten({"seed": 0, "model": {"hidden_sizes": [128]}, "optimizer": {"learning_rate": 0.1}, "x": 1})
  assert runs.config_differences([a, b]) == ["model.hidden_sizes", "x"]
  assert runs.config_differences([a, a]) == []


def test_compare_runs_table(two_runs):
  table = runs.compare_runs(two_runs)
  header = table.splitlines()[0]
  assert "lr_small" in header and "lr_big" in header
  assert _row(table, "`optimizer.learning_rate`") == ["0.001", "0.01"]
  assert _row(table, "`model.hidden_sizes`") == ["(64, 32)", "(128,)"]
  for equal_key in ("seed", "data.name", "optimizer.name", "train.log_every"):
    assert f"`{equal_key}`" not in table
  assert _row(table, "final step") == ["30", "30"]
  assert _row(table, "train loss (final)") == ["0.03333", "0.03333"]
  assert _row(table, "eval loss (best, min)") == ["0.4 @20", "0.3 @30"]
  assert _row(table, "eval accuracy (best, max)") == ["0.8 @20", "0.9 @20"]
  assert _row(table, "test accuracy") == ["0.8", "0.9"]
  assert _row(table, "test on checkpoint step") == ["10", "10"]


def test_compare_runs_without_summary_or_config(tmp_path, two_runs):
  partial = tmp_path / "partial"
  os.makedirs(partial)
  with open(partial / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"step": 5, "split": "train", "loss": 2.5}) + "\n")
  table = runs.compare_runs([two_runs[0], str(partial)])
  assert _row(table, "final step") == ["30", "5"]
  assert _row(table, "eval loss (best, min)") == ["0.4 @20", "-"]
  assert "`seed`" not in table
  with pytest.raises(FileNotFoundError, match="missing"):
    runs.compare_runs([str(tmp_path / "missing")])


def test_lower_is_better():
  assert all(runs.lower_is_better(m) for m in ("loss", "mse", "rmse", "mae", "perplexity", "total_loss"))
  assert not any(runs.lower_is_better(m) for m in ("accuracy", "f1_macro", "r2", "top_5_accuracy"))


def test_compare_runs_cli(two_runs):
  proc = subprocess.run([sys.executable, "-m", "tools.compare_runs", *two_runs], cwd=REPO, capture_output=True,
                        text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert "`optimizer.learning_rate`" in proc.stdout and "`seed`" not in proc.stdout
