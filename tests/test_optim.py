"""Optimizers, schedules and penalties against their textbook formulas."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from model_lib import optim
from model_lib.config import base_config


def _opt_cfg(**kw):
  c = base_config().optimizer
  for k, v in kw.items():
    if isinstance(v, dict):
      for kk, vv in v.items():
        c[k][kk] = vv
    else:
      c[k] = v
  return c


def _params():
  rng = np.random.default_rng(0)
  return {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}


def _grads():
  rng = np.random.default_rng(1)
  return {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}


def _apply(tx, params, grads_seq):
  state = tx.init(params)
  for g in grads_seq:
    updates, state = tx.update(g, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  return params


def test_sgd_is_w_minus_lr_g():
  tx, _ = optim.build_optimizer(_opt_cfg(name="sgd", learning_rate=0.01), 100)
  p, g = _params(), _grads()
  new = _apply(tx, p, [g])
  for k in p:
    np.testing.assert_allclose(new[k], np.asarray(p[k]) - 0.01 * np.asarray(g[k]), rtol=1e-6)


def test_adam_two_steps_match_textbook():
  lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
  tx, _ = optim.build_optimizer(_opt_cfg(name="adam", learning_rate=lr), 100)
  p, g1 = _params(), _grads()
  g2 = jax.tree.map(lambda x: -0.5 * x + 0.1, g1)
  got = _apply(tx, p, [g1, g2])
  for k in p:
    w, m, v = np.asarray(p[k], np.float64), 0.0, 0.0
    for t, g in enumerate([np.asarray(g1[k], np.float64), np.asarray(g2[k], np.float64)], start=1):
      m = b1 * m + (1 - b1) * g
      v = b2 * v + (1 - b2) * g * g
      m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
      w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-7)


def test_momentum_and_nesterov_match_formulas():
  lr, mu = 0.1, 0.9
  p, g = _params(), _grads()
  for nesterov in (False, True):
    tx, _ = optim.build_optimizer(_opt_cfg(name="momentum", learning_rate=lr, momentum=mu, nesterov=nesterov), 10)
    got = _apply(tx, p, [g, g])
    w, buf = np.asarray(p["w"], np.float64), 0.0
    gw = np.asarray(g["w"], np.float64)
    for _ in range(2):
      buf = mu * buf + gw
      w = w - lr * (gw + mu * buf if nesterov else buf)
    np.testing.assert_allclose(got["w"], w, rtol=1e-5)


def test_adamw_decoupled_weight_decay_only_on_kernels():
  lr, wd = 1e-2, 0.1
  p = _params()
  zero = jax.tree.map(jnp.zeros_like, p)
  tx, _ = optim.build_optimizer(_opt_cfg(name="adamw", learning_rate=lr, weight_decay=wd), 100)
  got = _apply(tx, p, [zero])  # Zero gradient: only the decay moves the weights.
  np.testing.assert_allclose(got["w"], np.asarray(p["w"]) * (1 - lr * wd), rtol=1e-6)
  np.testing.assert_allclose(got["b"], p["b"])  # Biases are not decayed.
  tx, _ = optim.build_optimizer(_opt_cfg(name="sgd", learning_rate=lr, weight_decay=wd), 100)
  got = _apply(tx, p, [zero])
  np.testing.assert_allclose(got["w"], np.asarray(p["w"]) * (1 - lr * wd), rtol=1e-6)


def test_l1_l2_penalties_change_gradients_by_their_formulas():
  p = _params()
  l1, l2 = 0.01, 0.05
  g = jax.grad(lambda q: optim.penalty(q, l1=l1, l2=l2))(p)
  np.testing.assert_allclose(g["w"], l1 * np.sign(p["w"]) + 2 * l2 * np.asarray(p["w"]), rtol=1e-6)
  np.testing.assert_allclose(g["b"], 0.0)  # Biases are not penalised.
  value = optim.penalty(p, l1=l1, l2=l2)
  np.testing.assert_allclose(value, l1 * np.abs(p["w"]).sum() + l2 * (np.asarray(p["w"]) ** 2).sum(), rtol=1e-6)


def test_grad_clipping_caps_global_norm():
  tx, _ = optim.build_optimizer(_opt_cfg(name="sgd", learning_rate=1.0, grad_clip_norm=0.5), 10)
  p, g = _params(), _grads()
  new = _apply(tx, p, [g])
  step = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), p, new)
  norm = math.sqrt(sum(float((x ** 2).sum()) for x in jax.tree.leaves(step)))
  assert norm == pytest.approx(0.5, rel=1e-5)


def test_gradient_accumulation_averages_k_microbatches():
  p, g1 = _params(), _grads()
  g2 = jax.tree.map(lambda x: 3.0 * x - 1.0, g1)
  tx, _ = optim.build_optimizer(_opt_cfg(name="sgd", learning_rate=0.1, accumulate_steps=2), 10)
  got = _apply(tx, p, [g1, g2])
  for k in p:
    np.testing.assert_allclose(got[k], np.asarray(p[k]) - 0.1 * (np.asarray(g1[k]) + np.asarray(g2[k])) / 2, rtol=1e-5)


@pytest.mark.parametrize("name", ["rmsprop", "adagrad"])
def test_rmsprop_adagrad_first_step(name):
  lr = 0.01
  tx, _ = optim.build_optimizer(_opt_cfg(name=name, learning_rate=lr), 10)
  p, g = _params(), _grads()
  got = _apply(tx, p, [g])
  gw = np.asarray(g["w"], np.float64)
  if name == "rmsprop":  # nu = (1 - decay) g², update = g / (sqrt(nu) + eps)
    want = np.asarray(p["w"]) - lr * gw / (np.sqrt(0.1 * gw ** 2) + 1e-8)
  else:  # optax adagrad: nu starts at 0.1 (initial_accumulator_value), nu += g², update = g / sqrt(nu + eps)
    want = np.asarray(p["w"]) - lr * gw / np.sqrt(0.1 + gw ** 2 + 1e-8)
  np.testing.assert_allclose(got["w"], want, rtol=1e-4)


def test_schedules_match_formulas():
  lr, total = 0.1, 100
  cases = {
      "constant": lambda t: lr,
      "linear": lambda t: lr + (lr * 0.1 - lr) * min(t, total) / total,
      "cosine": lambda t: lr * ((1 - 0.1) * 0.5 * (1 + math.cos(math.pi * min(t, total) / total)) + 0.1),
      "warmup_cosine": lambda t: (lr * t / 10 if t < 10 else
                                  lr * 0.1 + (lr - lr * 0.1) * 0.5 * (1 + math.cos(math.pi * (t - 10) / 90))),
      "step": lambda t: lr * 0.5 ** (t // 30),
  }
  for name, formula in cases.items():
    cfg = _opt_cfg(learning_rate=lr, schedule={"name": name, "end_factor": 0.1, "warmup_steps": 10,
                                               "step_size": 30, "decay_rate": 0.5})
    sched = optim.build_schedule(cfg, total)
    for t in (0, 5, 10, 29, 30, 50, 99, 100):
      assert float(sched(t)) == pytest.approx(formula(t), rel=1e-5, abs=1e-8), (name, t)


def test_unknown_optimizer_and_schedule_errors_name_the_key():
  with pytest.raises(ValueError, match=r"optimizer.name.*adam"):
    optim.build_optimizer(_opt_cfg(name="adamm"), 10)
  with pytest.raises(ValueError, match="optimizer.schedule.name"):
    optim.build_schedule(_opt_cfg(schedule={"name": "cosin"}), 10)
