"""inspect_checkpoint restores params without the model; digests tell identical runs from different ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import digits_mlp
from model_lib.checkpoint import Checkpointer
from model_lib.checkpoint_inspect import inspect_checkpoint, params_digest
from model_lib.data import load_dataset
from model_lib.train.trainer import build_experiment, train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(seed: int):
  config = digits_mlp.get_config()
  config.seed = seed
  config.train.num_epochs = 0
  config.train.num_steps = 30
  config.train.eval_every = 10
  config.train.async_checkpointing = False
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two identical 30-step digits runs and one with another seed, sharing one loaded dataset."""
  dataset = load_dataset(_config(0).data)
  out = {}
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    workdir = str(tmp_path_factory.mktemp(name))
    train_and_evaluate(_config(seed), workdir, dataset=dataset, show_progress=False)
    out[name] = workdir
  return out, dataset


def test_identical_runs_have_equal_digests(runs):
  dirs, _ = runs
  a, b, c = (inspect_checkpoint(dirs[k]) for k in "abc")
  assert a["steps"] == [10, 20, 30] and a["step"] == 30
  assert a["params_digest"] == b["params_digest"]
  assert a["params_digest"] != c["params_digest"]
  assert a["num_params"] == 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
  assert a["params"]["Dense_0/kernel"] == {"shape": [64, 256], "dtype": "float32"}
  assert "batch_stats_digest" not in a  # The MLP has no BatchNorm statistics.


def test_step_selects_checkpoint(runs):
  dirs, _ = runs
  first = inspect_checkpoint(dirs["a"], step=10)
  assert first["step"] == 10
  assert first["params_digest"] != inspect_checkpoint(dirs["a"])["params_digest"]
  assert first["params_digest"] == inspect_checkpoint(dirs["b"], step=10)["params_digest"]
  with pytest.raises(ValueError, match=r"Step 7 .*\[10, 20, 30\]"):
    inspect_checkpoint(dirs["a"], step=7)
  best = inspect_checkpoint(dirs["a"], kind="best")
  assert len(best["steps"]) == 1


def test_digest_matches_live_params(runs):
  dirs, dataset = runs
  exp = build_experiment(_config(0), dataset)
  ckpt = Checkpointer(dirs["a"], async_save=False, read_only=True)
  step, state, _, _ = ckpt.restore(exp.state, step=20)
  assert params_digest(state.params) == inspect_checkpoint(dirs["a"], step=step)["params_digest"]


def test_digest_covers_paths_dtypes_and_shapes():
  x = np.arange(6, dtype=np.float32)
  base = params_digest({"w": x})
  assert base == params_digest({"w": x.copy()})
  assert base != params_digest({"v": x})
  assert base != params_digest({"w": x.reshape(2, 3)})
  assert base != params_digest({"w": x.view(np.int32)})
  assert params_digest({"a": x, "b": x}) == params_digest({"b": x, "a": x})


def test_missing_checkpoint_dir(tmp_path):
  with pytest.raises(FileNotFoundError, match="No checkpoint directory"):
    inspect_checkpoint(str(tmp_path))


def test_inspect_checkpoint_cli(runs):
  dirs, _ = runs
  proc = subprocess.run([sys.executable, "-m", "tools.inspect_checkpoint", dirs["a"], "--step", "20"], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout)
  assert out["step"] == 20 and out["steps"] == [10, 20, 30]
  assert out["params_digest"] == inspect_checkpoint(dirs["b"], step=20)["params_digest"]
  bad = subprocess.run([sys.executable, "-m", "tools.inspect_checkpoint", dirs["a"], "--step", "7"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: Step 7")
