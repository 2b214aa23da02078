"""Checks shared by the model-family tests: bfloat16 vs float32 on one batch, overfitting one batch."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_lib.train.step import make_train_step


def assert_bfloat16_close_to_float32(model, params, batch, task) -> None:
  """bfloat16 has an 8-bit mantissa (relative step 2^-8 = 0.4%): on the same batch the loss must stay within 1%
  and every logit within 5% of the largest one, yet differ (the compute really ran in bfloat16). The parameters
  are perturbed from init so that the logits are O(1) rather than near zero."""

  @jax.jit
  def both(params, x):
    params = jax.tree.map(lambda p: p + 0.1 * jnp.sin(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)),
                          nn.meta.unbox(params))
    return model.apply({"params": params}, x), model.clone(dtype="bfloat16").apply({"params": params}, x)

  out32, out16 = both(params, batch["x"])
  assert out16.dtype == jnp.float32
  diff = float(jnp.abs(out16 - out32).max())
  assert 0 < diff <= 0.05 * float(jnp.abs(out32).max()), diff
  loss32, loss16 = float(task.loss(out32, batch)), float(task.loss(out16, batch))
  assert abs(loss16 - loss32) <= 0.01 * loss32, (loss32, loss16)


def assert_overfits_one_batch(state, batch, task, steps: int) -> None:
  """The real train step drives the loss on one batch below 10% of its start within `steps` steps."""
  state = jax.tree.map(jnp.copy, state)  # The step donates its input; keep the caller's state intact.
  step = jax.jit(make_train_step(task), donate_argnums=0)
  losses = []
  for _ in range(steps):
    state, metrics = step(state, batch, jax.random.key(1, impl="rbg"))
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.1 * losses[0], losses[::max(1, steps // 8)]
