"""End-to-end training: accuracy targets, exact resume, no recompiles, one-line errors for bad input."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import breast_cancer_logreg, diabetes_regression, digits_mlp
from model_lib import optim
from model_lib.checkpoint import Checkpointer
from model_lib.config import ConfigError, validate
from model_lib.data import load_dataset
from model_lib.models import build_model
from model_lib.train import tasks, trainer
from model_lib.train.state import create_train_state
from model_lib.train.step import make_train_step
from model_lib.train.writer import MetricWriter, read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _small_digits(**overrides):
  c = digits_mlp.get_config()
  c.train.num_epochs = 0
  c.train.num_steps = 90
  c.train.eval_every = 30
  c.train.log_every = 10
  c.optimizer.schedule.name = "cosine"
  for k, v in overrides.items():
    section, key = k.split("__")
    c[section][key] = v
  return c


def _final_params(workdir):
  exp = trainer.build_experiment(json_config(workdir))
  step, state, _, _ = Checkpointer(workdir, read_only=True).restore(exp.state)
  return step, state


def json_config(workdir):
  from model_lib.config import load_run_config
  return load_run_config(workdir)


def _tensorboard_tags(workdir) -> dict:
  """{tag: kind} of every summary in the run's TensorBoard event files (read with tensorboardX's protos)."""
  import glob
  import struct

  from tensorboardX.proto import event_pb2

  tags = {}
  for path in glob.glob(os.path.join(str(workdir), "events.out.tfevents*")):
    data, i = open(path, "rb").read(), 0
    while i < len(data):
      n = struct.unpack("<Q", data[i:i + 8])[0]
      event = event_pb2.Event()
      event.ParseFromString(data[i + 12:i + 12 + n])
      i += 12 + n + 4
      tags.update({v.tag: v.WhichOneof("value") for v in event.summary.value})
  return tags


@pytest.mark.slow
def test_digits_mlp_reaches_95_percent(tmp_path):
  summary = trainer.train_and_evaluate(digits_mlp.get_config(), str(tmp_path), show_progress=False)
  assert summary["test"]["accuracy"] >= 0.95
  rows = read_metrics(str(tmp_path))
  assert {"train", "eval", "test"} <= {r["split"] for r in rows}
  assert all({"step", "split"} <= set(r) for r in rows)
  assert os.path.exists(tmp_path / "config.json")
  tags = _tensorboard_tags(tmp_path)
  assert tags["train/inputs"] == "image"  # A few input images for image models.
  for tag in ("train/loss", "train/learning_rate", "train/grad_norm", "train/examples_per_sec", "eval/accuracy"):
    assert tags[tag] == "simple_value", tag


@pytest.mark.slow
def test_diabetes_regression_beats_mean_predictor(tmp_path):
  summary = trainer.train_and_evaluate(diabetes_regression.get_config(), str(tmp_path), show_progress=False)
  assert summary["test"]["r2"] > 0.3
  assert {"mse", "mae", "rmse", "r2"} <= set(summary["test"])


def test_breast_cancer_logreg_reports_binary_metrics(tmp_path):
  c = breast_cancer_logreg.get_config()
  c.train.num_epochs = 10
  summary = trainer.train_and_evaluate(c, str(tmp_path), show_progress=False)
  assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(summary["test"])
  assert summary["test"]["accuracy"] > 0.9 and summary["test"]["roc_auc"] > 0.95


def test_same_seed_same_numbers_and_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
  config = _small_digits(train__checkpoint_every=20)
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  trainer.train_and_evaluate(config, a, show_progress=False)

  # Run b is "preempted" (SIGTERM to ourselves) when step 50 is logged, then resumed.
  original_write = MetricWriter.write

  def write_and_maybe_kill(self, step, split, scalars):
    original_write(self, step, split, scalars)
    if split == "train" and step == 50 and not os.environ.get("_RESUMED"):
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(MetricWriter, "write", write_and_maybe_kill)
  first = trainer.train_and_evaluate(config, b, show_progress=False)
  assert first == {"step": 50, "preempted": "SIGTERM"}
  assert 50 in Checkpointer(b, read_only=True).steps()  # Saved at the current step, not at the last interval.
  monkeypatch.setenv("_RESUMED", "1")
  trainer.train_and_evaluate(config, b, show_progress=False)

  step_a, state_a = _final_params(a)
  step_b, state_b = _final_params(b)
  assert step_a == step_b == 90
  for x, y in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params)):
    np.testing.assert_array_equal(x, y)  # Bitwise identical.
  for x, y in zip(jax.tree.leaves(state_a.opt_state), jax.tree.leaves(state_b.opt_state)):
    np.testing.assert_array_equal(x, y)
  rows_a = [(r["step"], r["split"]) for r in read_metrics(a)]
  rows_b = [(r["step"], r["split"]) for r in read_metrics(b)]
  assert rows_a == rows_b  # No duplicated or missing rows after the resume.
  eval_a = [r for r in read_metrics(a) if r["split"] in ("eval", "test")]
  eval_b = [r for r in read_metrics(b) if r["split"] in ("eval", "test")]
  assert eval_a == eval_b


def test_train_step_compiles_once():
  config = _small_digits()
  dataset = load_dataset(config.data)
  task = tasks.build_task(dataset.info)
  model = build_model(config.model, dataset.info.num_outputs)
  tx, _ = optim.build_optimizer(config.optimizer, 100)
  state = create_train_state(model, tx, dataset.split("train")["x"][:32], jax.random.key(0))
  step = jax.jit(make_train_step(task), donate_argnums=0)
  x, y = dataset.split("train")["x"], dataset.split("train")["y"]
  for i in range(5):
    state, metrics = step(state, {"x": x[i * 32:(i + 1) * 32], "y": y[i * 32:(i + 1) * 32]}, jax.random.key(1))
  assert step._cache_size() == 1
  assert int(state.step) == 5 and np.isfinite(float(metrics["loss"]))


def test_validation_errors_name_the_key():
  c = digits_mlp.get_config()
  c.optimizer.learning_rate = -0.1
  with pytest.raises(ConfigError, match=r"optimizer.learning_rate must be > 0"):
    validate(c)
  c = digits_mlp.get_config()
  c.data.batch_size = 0
  with pytest.raises(ConfigError, match=r"data.batch_size must be > 0"):
    validate(c)
  c = digits_mlp.get_config()
  c.train.num_steps = 10  # num_epochs is also set.
  with pytest.raises(ConfigError, match="exactly one of train.num_steps / train.num_epochs"):
    validate(c)
  c = digits_mlp.get_config()
  c.train.early_stopping.mode = "maximum"
  with pytest.raises(ConfigError, match="train.early_stopping.mode"):
    validate(c)
  c = digits_mlp.get_config()
  c.train.foo = 1
  with pytest.raises(ConfigError, match=r"Unknown config key 'train.foo'"):
    validate(c)


def _cli(*args, env=None):
  full_env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=REPO, capture_output=True, text=True,
                        env=full_env, timeout=120)


@pytest.mark.parametrize("args,env,needle", [
    (["--config.train.num_step=5"], None, 'unknown config key in --config.train.num_step. Did you mean "num_steps"'),
    (["--config.model.name=mlpp"], None, "Unknown model 'mlpp' (config key model.name)"),
    (["--config.train.num_steps=abc"], None, "--config.train.num_steps=abc"),
    (["--config=experiments/configs/mnist_mlp.py"], {"MODEL_LIB_DATA_DIR": "/nonexistent"},
     "Local files 'mnist' are not under data_dir '/nonexistent'; point --config.data.data_dir (or env MODEL_LIB_DATA_DIR)"),
    (["--config=experiments/configs/mnist_mlp.py", "--config.data.source=local"], {"MODEL_LIB_DATA_DIR": "/nonexistent"},
     "MNIST folder 'mnist/' not found at '/nonexistent/mnist'. Point --config.data.data_dir (or env MODEL_LIB_DATA_DIR)"),
    (["--config=experiments/configs/nope.py"], None, "config file 'experiments/configs/nope.py' not found"),
])
def test_cli_bad_input_gives_one_line_error(tmp_path, args, env, needle):
  result = _cli(*args, f"--workdir={tmp_path}/w", env=env)
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and needle in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
