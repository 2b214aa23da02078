"""Sweeps: space files load, grid covers every combination once, ranking and table follow the trial values."""

import json

import pytest

from experiments.configs import digits_mlp
from model_lib.sweep import load_space, results_table, run_sweep


def test_load_space_from_py_and_yaml():
  py = load_space("experiments/sweeps/digits_lr_dropout.py")
  assert py["optimizer.learning_rate"]["log"] is True
  yaml_space = load_space("experiments/sweeps/digits_grid.yaml")
  assert yaml_space["model.dropout"]["choices"] == [0.0, 0.2]


def test_bad_space_errors(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"optimizer.learning_rate": {"type": "uniform"}}))
  with pytest.raises(ValueError, match="type must be float, int or categorical"):
    load_space(str(bad))
  with pytest.raises(FileNotFoundError, match="--space"):
    load_space(str(tmp_path / "missing.py"))


@pytest.mark.slow
def test_grid_sweep_runs_every_combination_and_ranks(tmp_path):
  c = digits_mlp.get_config()
  c.train.num_epochs = 2
  space = {"optimizer.learning_rate": {"type": "categorical", "choices": [1e-3, 3e-3]},
           "model.dropout": {"type": "categorical", "choices": [0.0, 0.2]}}
  report = run_sweep(c, space, str(tmp_path), trials=10, metric="accuracy", mode="max", sampler="grid")
  combos = {(t["overrides"]["optimizer.learning_rate"], t["overrides"]["model.dropout"]) for t in report["trials"]}
  assert len(report["trials"]) == 4 and len(combos) == 4
  values = [t["value"] for t in report["trials"]]
  assert values == sorted(values, reverse=True) and report["best"]["value"] == values[0]
  for t in report["trials"]:
    with open(f"{t['workdir']}/config.json") as f:
      saved = json.load(f)
    assert saved["optimizer"]["learning_rate"] == t["overrides"]["optimizer.learning_rate"]
  assert (tmp_path / "sweep.png").exists()
  assert results_table(report).count("\n") == 5
