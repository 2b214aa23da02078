"""Research workflows through the real trainer: fine-tuning from a run, distillation, quantization-aware training."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.configs import digits_mlp
from model_lib.checkpoint_inspect import flat_leaves, restore_raw
from model_lib.compress.experiments import quantization_report
from model_lib.train.trainer import train_and_evaluate


def _cfg(steps=40):
  c = digits_mlp.get_config()
  c.train.num_epochs, c.train.num_steps, c.train.eval_every, c.train.log_every = 0, steps, steps, 10
  c.train.early_stopping.metric = ""
  return c


def _params(workdir, step):
  return flat_leaves(restore_raw(os.path.join(workdir, "checkpoints"), step, keys=("params",))["params"])


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("source"))
  train_and_evaluate(_cfg(), workdir, show_progress=False)
  return workdir


@pytest.mark.slow
def test_init_from_loads_backbone_freezes_it_and_refreshes_a_resized_head(source_run, tmp_path):
  c = _cfg(30)
  c.model.hidden_sizes = (256, 64)  # Dense_1 and the head change shape; Dense_0 matches.
  c.init_from = source_run
  c.optimizer.freeze = r"^Dense_0/"
  train_and_evaluate(c, str(tmp_path), show_progress=False)
  with open(tmp_path / "init_from.json") as f:
    report = json.load(f)
  assert sorted(report["loaded"]) == ["Dense_0/bias", "Dense_0/kernel", "Dense_2/bias"]  # Same path and shape.
  assert any(r.startswith("Dense_1/kernel") for r in report["resized"])
  src, new = _params(source_run, 40), _params(str(tmp_path), 30)
  np.testing.assert_array_equal(new["Dense_0/kernel"], src["Dense_0/kernel"])  # Loaded bit for bit, then frozen.
  np.testing.assert_array_equal(new["Dense_0/bias"], src["Dense_0/bias"])


@pytest.mark.slow
def test_distillation_with_alpha_one_equals_plain_training(source_run, tmp_path):
  plain = _cfg(20)
  distilled = _cfg(20)
  distilled.distill.teacher_workdir, distilled.distill.alpha = source_run, 1.0
  train_and_evaluate(plain, str(tmp_path / "plain"), show_progress=False)
  summary = train_and_evaluate(distilled, str(tmp_path / "distilled"), show_progress=False)
  a, b = _params(str(tmp_path / "plain"), 20), _params(str(tmp_path / "distilled"), 20)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
  distilled.distill.alpha = 0.3  # With the teacher's soft targets the student follows another path.
  train_and_evaluate(distilled, str(tmp_path / "mixed"), show_progress=False)
  assert not np.allclose(_params(str(tmp_path / "mixed"), 20)["Dense_0/kernel"], a["Dense_0/kernel"])
  assert summary["test"]["accuracy"] > 0.3


@pytest.mark.slow
def test_qat_run_evaluates_exactly_like_its_int8_weights(tmp_path):
  c = _cfg(40)
  c.quant.qat = True
  summary = train_and_evaluate(c, str(tmp_path), show_progress=False)
  report = quantization_report(str(tmp_path))
  assert report["qat"] and report["int8_bytes"] < 0.3 * report["float_bytes"]
  # The QAT forward pass uses dequantize(quantize(w)), exactly what int8 post-training quantization computes.
  assert report["int8_accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-9)
