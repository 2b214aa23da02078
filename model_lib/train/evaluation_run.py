"""Evaluate a finished run: restore its best (or latest) checkpoint and write metrics, predictions and plots."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from model_lib import plots
from model_lib.checkpoint import Checkpointer
from model_lib.config import load_run_config
from model_lib.train import tasks
from model_lib.train.evaluate import evaluate_split
from model_lib.train.step import make_eval_step
from model_lib.train.trainer import build_experiment, param_transform


def restore_for_eval(workdir: str, which: str = "best") -> tuple[Any, Any, int, str]:
  """(experiment, restored state, step, 'best'|'latest'): the best checkpoint if one exists, else the latest."""
  config = load_run_config(workdir)
  # Checkpoints restore onto any mesh: evaluate on whatever devices this machine has.
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor, config.parallel.mode = -1, 1, 1, "jit"
  config.distill.teacher_workdir = ""  # Evaluation is the student's own.
  exp = build_experiment(config)
  kinds = ("best", "checkpoints") if which == "best" else ("checkpoints",)
  for kind in kinds:
    if os.path.isdir(os.path.join(workdir, kind)):
      restored = Checkpointer(workdir, kind, read_only=True).restore(exp.state)
      if restored is not None:
        return exp, restored[1], restored[0], "best" if kind == "best" else "latest"
  raise FileNotFoundError(f"No checkpoint under '{workdir}' (looked in {list(kinds)}); train first with "
                          f"`python -m experiments.train --workdir={workdir}`.")


def evaluate_run(workdir: str, split: str = "test", which: str = "best") -> dict[str, Any]:
  """Writes eval_<split>.json, predictions_<split>.npz and (classifiers) confusion/ROC PNGs; returns the metrics."""
  exp, state, step, kind = restore_for_eval(workdir, which)
  arrays = exp.dataset.split(split)
  metrics, y_true, y_score = evaluate_split(jax.jit(make_eval_step(exp.task, param_transform=param_transform(
      exp.config))), state, arrays,
                                            exp.config.data.eval_batch_size, exp.task, collect_scores=True)
  if isinstance(exp.task, tasks.Regression):
    y_true, y_score = exp.task.original_units(y_true), exp.task.original_units(y_score)
  result = {"split": split, "checkpoint": kind, "step": step, "num_examples": int(len(y_true)), **metrics}
  with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
    json.dump(result, f, indent=2)
  np.savez(os.path.join(workdir, f"predictions_{split}.npz"), y_true=np.asarray(y_true), y_score=np.asarray(y_score))
  info = exp.dataset.info
  if isinstance(exp.task, (tasks.Classification, tasks.Binary)):
    preds = y_score.argmax(-1) if y_score.ndim == 2 else (y_score > 0.5).astype(int)
    num_classes = max(info.num_classes, 2)
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true).astype(int), preds), 1)
    names = info.class_names or tuple(str(i) for i in range(num_classes))
    plots.plot_confusion_matrix(cm, names, os.path.join(workdir, f"confusion_matrix_{split}.png"))
  if isinstance(exp.task, tasks.Binary):
    plots.plot_roc_curve(y_true, y_score, os.path.join(workdir, f"roc_curve_{split}.png"))
  return result
