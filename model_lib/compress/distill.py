"""Knowledge distillation (Hinton et al. 2015): a frozen teacher's softened outputs guide a student.

loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
The teacher runs inside the same jitted train step, under `stop_gradient`, with its variables as
constants of the step: no gradients, no optimizer state, never updated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from model_lib.train import losses


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, alpha: float,
                      temperature: float) -> jax.Array:
  """Per-example loss (B,) as in the module docstring; alpha = 1 is plain cross-entropy."""
  ce = losses.softmax_cross_entropy(student_logits, labels)
  t = temperature
  log_p_teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1)
  log_p_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
  kl = (jnp.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(-1)
  return alpha * ce + (1.0 - alpha) * t * t * kl


@dataclasses.dataclass(frozen=True)
class Distillation:
  """Wraps a classification task: training uses the distillation loss, evaluation is the base task's."""

  base: Any
  teacher_apply: Any  # (variables, x) -> logits, with `train=False` bound.
  teacher_variables: Any
  alpha: float = 0.5
  temperature: float = 4.0

  def __getattr__(self, name: str) -> Any:  # eval_stats, scores, finalize, needs_scores, ... come from the base task.
    return getattr(self.base, name)

  def loss(self, outputs: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
    teacher_logits = jax.lax.stop_gradient(self.teacher_apply(self.teacher_variables, batch["x"]))
    per_example = distillation_loss(outputs, teacher_logits, batch["y"], self.alpha, self.temperature)
    return losses.weighted_mean(per_example, batch.get("mask"))


def load_teacher(workdir: str) -> tuple[Any, Any]:
  """(apply_fn, variables) of the best (else latest) checkpoint of a finished run, built from its config.json."""
  from model_lib.checkpoint_inspect import find_checkpoint, restore_raw
  from model_lib.config import load_run_config
  from model_lib.data import load_dataset
  from model_lib.models import build_model

  config = load_run_config(workdir)
  info = load_dataset(config.data).info
  model = build_model(config.model, num_outputs=info.num_outputs, vocab_size=info.vocab_size or None)
  found = find_checkpoint(workdir)
  if found is None:
    raise FileNotFoundError(f"No checkpoint under teacher workdir '{workdir}' (config key distill.teacher_workdir); "
                            f"train the teacher first.")
  directory, steps = found
  variables = {k: jax.tree.map(jnp.asarray, v) for k, v in restore_raw(directory, steps[-1]).items() if v}
  return (lambda v, x: model.apply(v, x, train=False)), variables
