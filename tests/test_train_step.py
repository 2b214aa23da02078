"""The train step: norms only on measured steps (same updates), and the non-finite flags with and without the guard."""

import chex
import jax
import numpy as np
import optax
import pytest

from experiments.configs import digits_mlp
from model_lib import optim
from model_lib.data import load_dataset
from model_lib.models import build_model
from model_lib.train import tasks
from model_lib.train.state import create_train_state
from model_lib.train.step import make_train_step, measure_at

LR = 0.05


@pytest.fixture(scope="module")
def setup():
  config = digits_mlp.get_config()
  config.optimizer.update(name="sgd", learning_rate=LR, weight_decay=0.0)
  config.optimizer.schedule.name = "constant"
  dataset = load_dataset(config.data)
  task = tasks.build_task(dataset.info)
  model = build_model(config.model, dataset.info.num_outputs)
  tx, _ = optim.build_optimizer(config.optimizer, 100)
  x, y = dataset.split("train")["x"][:192], dataset.split("train")["y"][:192]
  batches = [{"x": x[i:i + 32], "y": y[i:i + 32]} for i in range(0, 192, 32)]
  return task, lambda: create_train_state(model, tx, x[:32], jax.random.key(0)), batches


def _run(setup, **kwargs):
  task, init, batches = setup
  step = jax.jit(make_train_step(task, **kwargs))
  state, states, metrics = init(), [], []
  for b in batches:
    state, m = step(state, b, jax.random.key(1))
    states.append(jax.device_get(state.params))
    metrics.append(jax.device_get(m))
  return states, metrics


def test_measure_at_picks_multiples_and_the_last_step():
  measure = measure_at(8, 12, 0, last=30)
  got = [s for s in range(1, 31) if bool(measure(np.int32(s)))]
  assert got == [8, 12, 16, 24, 30]


def test_unmeasured_steps_skip_the_norms_but_update_identically(setup):
  every, _ = _run(setup)
  params, metrics = _run(setup, measure=measure_at(3))
  chex.assert_trees_all_equal(params, every)  # Bit-identical updates on every step.
  before = setup[1]().params
  for i, (p, m) in enumerate(zip(params, metrics), start=1):
    if i % 3:
      assert m["measured"] == 0 and m["grad_norm"] == 0 and m["param_norm"] == 0
      continue
    assert m["measured"] == 1
    # Independent references: SGD moved the params by lr * gradient; the norm of the new params in NumPy.
    moved = np.sqrt(sum(np.sum((np.asarray(a) - np.asarray(b)) ** 2)
                        for a, b in zip(jax.tree.leaves(params[i - 2] if i > 1 else before), jax.tree.leaves(p))))
    np.testing.assert_allclose(m["grad_norm"], moved / LR, rtol=1e-3)
    np.testing.assert_allclose(m["param_norm"], np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2)
                                                            for a in jax.tree.leaves(p))), rtol=1e-5)
    assert m["nonfinite"] == 0


@pytest.mark.parametrize("guard", [True, False])
def test_a_nan_batch_is_flagged_on_any_step_and_dropped_only_under_the_guard(setup, guard):
  task, init, batches = setup
  step = jax.jit(make_train_step(task, guard_nonfinite=guard, measure=lambda s: s < 0))  # Never measured.
  state = init()
  before = jax.device_get((state.params, state.opt_state))
  poisoned = {"x": np.where(np.arange(batches[0]["x"].size).reshape(batches[0]["x"].shape) == 5, np.nan,
                            batches[0]["x"]).astype(batches[0]["x"].dtype), "y": batches[0]["y"]}
  state, m = step(state, poisoned, jax.random.key(1))
  assert m["nonfinite"] == 1 and m["nonfinite_leaf"] >= 0  # The loss check runs every step; then the leaf search.
  assert m["measured"] == (1 if guard else 0)  # The guard needs every step measured.
  after = jax.device_get((state.params, state.opt_state))
  if guard:
    chex.assert_trees_all_equal(after, before)
  else:
    assert not all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(after[0]))
  assert int(state.step) == 1
