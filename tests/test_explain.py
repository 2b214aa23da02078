"""Attributions against closed forms: completeness of IG, linear-model saliency, permutation importance, SHAP."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn.metrics import r2_score

from model_lib.explain.attribution import (class_score_fn, integrated_gradients, occlusion, saliency,
                                           smoothgrad)
from model_lib.explain.importance import permutation_importance, shap_values
from model_lib.models import build_model


def _mlp():
  model = build_model(ml_collections.ConfigDict({"name": "mlp", "hidden_sizes": (16, 16), "activation": "tanh"}), 3)
  x = jax.random.normal(jax.random.key(0), (4, 6))
  params = model.init(jax.random.key(1), x)["params"]
  return (lambda v: model.apply({"params": params}, v)), x


def test_integrated_gradients_completeness_within_one_percent():
  apply, x = _mlp()
  f = class_score_fn(apply, 1)
  attributions = integrated_gradients(f, x, num_steps=128)
  total = attributions.reshape(4, -1).sum(-1)
  expected = f(x) - f(jnp.zeros_like(x))
  np.testing.assert_allclose(total, expected, rtol=0.01, atol=1e-4)


def test_saliency_and_smoothgrad_of_linear_model_equal_its_weights():
  w = jnp.asarray(np.random.default_rng(0).normal(size=(5,)), jnp.float32)
  f = lambda x: x @ w  # noqa: E731
  x = jnp.ones((3, 5))
  np.testing.assert_allclose(saliency(f, x), jnp.broadcast_to(w, (3, 5)), rtol=1e-6)
  np.testing.assert_allclose(smoothgrad(f, x, jax.random.key(0), 8), jnp.broadcast_to(w, (3, 5)), rtol=1e-5)


def test_occlusion_marks_only_the_region_the_model_reads():
  f = lambda x: x[:, 4:8, 4:8].sum(axis=(1, 2, 3))  # noqa: E731
  x = jnp.ones((2, 16, 16, 1))
  heat = occlusion(f, x, patch=4)
  assert heat.shape == (2, 16, 16)
  assert float(heat[:, 4:8, 4:8].min()) == pytest.approx(16.0)
  mask = np.ones((16, 16), bool)
  mask[4:8, 4:8] = False
  assert float(jnp.abs(heat[:, mask]).max()) == 0.0


def test_permutation_importance_ranks_the_real_feature_above_noise():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 5))
  y = 3 * x[:, 2] + 0.1 * rng.normal(size=400)
  predict = lambda v: 3 * v[:, 2]  # noqa: E731  (a model that learnt the relation)
  out = permutation_importance(predict, x, y, r2_score, num_repeats=3)
  assert int(np.argmax(out["mean"])) == 2
  assert out["mean"][2] > 1.0 and np.all(np.abs(np.delete(out["mean"], 2)) < 1e-12)


def test_shap_values_of_linear_model_match_closed_form():
  rng = np.random.default_rng(1)
  w = np.array([2.0, -1.0, 0.0, 0.5])
  background = rng.normal(size=(50, 4))
  x = rng.normal(size=(5, 4))
  predict = jax.jit(lambda v: v @ jnp.asarray(w, jnp.float32))
  values = shap_values(lambda v: np.asarray(predict(jnp.asarray(v, jnp.float32))), background, x)
  np.testing.assert_allclose(values, w * (x - background.mean(0)), atol=1e-4)


@pytest.mark.slow
def test_explain_run_writes_png_and_json_for_image_and_tabular_runs(tmp_path):
  import json
  import os

  from experiments.configs import breast_cancer_logreg, digits_mlp
  from model_lib.explain.run import explain_run
  from model_lib.train.trainer import train_and_evaluate

  c = digits_mlp.get_config()
  c.train.num_epochs = 3
  train_and_evaluate(c, str(tmp_path / "digits"), show_progress=False)
  out = explain_run(str(tmp_path / "digits"), "integrated_gradients", index=2)
  assert abs(out["completeness_gap"]) < 0.01 * max(1.0, abs(out["attribution_sum"]))
  assert os.path.exists(tmp_path / "digits" / "explain_integrated_gradients_2.png")
  c = breast_cancer_logreg.get_config()
  c.train.num_epochs = 3
  train_and_evaluate(c, str(tmp_path / "bc"), show_progress=False)
  for method in ("permutation", "shap"):
    explain_run(str(tmp_path / "bc"), method, index=0)
    with open(tmp_path / "bc" / f"explain_{method}_0.json") as f:
      saved = json.load(f)
    assert len(saved["features"]) == 30
  assert len(saved["shap_values"]) == 30
