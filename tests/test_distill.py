"""Distillation loss vs NumPy; alpha = 1 is plain CE; no gradient reaches the teacher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_lib.compress.distill import Distillation, distillation_loss
from model_lib.train import losses
from model_lib.train.tasks import Classification


def _np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("alpha,temperature", [(0.5, 4.0), (0.1, 2.0), (0.9, 1.0)])
def test_distillation_loss_matches_numpy(alpha, temperature):
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 3
  y = rng.integers(0, 5, 6)
  ce = -_np_log_softmax(s)[np.arange(6), y]
  pt, ls, lt = np.exp(_np_log_softmax(t / temperature)), _np_log_softmax(s / temperature), _np_log_softmax(t / temperature)
  want = alpha * ce + (1 - alpha) * temperature ** 2 * (pt * (lt - ls)).sum(-1)
  got = distillation_loss(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32), jnp.asarray(y), alpha, temperature)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_alpha_one_is_plain_cross_entropy():
  rng = np.random.default_rng(1)
  s, t = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  y = jnp.asarray([0, 2, 1, 1])
  np.testing.assert_allclose(distillation_loss(s, t, y, 1.0, 3.0), losses.softmax_cross_entropy(s, y), rtol=1e-6)


def test_no_gradient_reaches_the_teacher_and_student_gradient_is_correct():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 8))
  teacher_w = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  task = Distillation(Classification(num_classes=3), lambda v, inp: inp @ v["w"], {"w": teacher_w}, 0.3, 2.0)

  def loss(student_w, tw):
    t = Distillation(task.base, task.teacher_apply, {"w": tw}, task.alpha, task.temperature)
    return t.loss(x @ student_w, {"x": x, "y": y})

  student_w = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  g_student, g_teacher = jax.grad(loss, argnums=(0, 1))(student_w, teacher_w)
  np.testing.assert_array_equal(g_teacher, 0.0)
  ref = jax.grad(lambda w: distillation_loss(x @ w, x @ teacher_w, y, 0.3, 2.0).mean())(student_w)
  np.testing.assert_allclose(g_student, ref, rtol=1e-5)
  assert task.num_classes == 3 and not task.needs_scores  # Evaluation is the base task's.
