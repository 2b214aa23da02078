"""`train_and_evaluate(config, workdir)`: wires data, model, optimizer, steps and checkpoints together."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Any

import jax
import ml_collections
from tqdm.auto import tqdm

from model_lib import config as config_lib
from model_lib import optim, plots
from model_lib import workdir as workdir_lib
from model_lib.checkpoint import Checkpointer, abstract_like
from model_lib.data import Dataset, load_dataset
from model_lib.data.pipeline import eval_arrays, make_train_iterator, sample_inputs, steps_per_epoch
from model_lib.models import build_model
from model_lib.sampling import sample_text
from model_lib.train import tasks
from model_lib.train.evaluate import evaluate_split
from model_lib.train.loop import run_loop
from model_lib.train.state import TrainState, count_params, create_train_state, rng_streams
from model_lib.train.step import make_eval_step, make_train_step
from model_lib.train.writer import MetricWriter

log = logging.getLogger(__name__)
TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass
class Experiment:
  """Everything built from a config, before any training: reused by training, evaluation and tools."""

  config: ml_collections.ConfigDict
  dataset: Dataset
  task: Any
  model: Any
  state: TrainState  # Freshly initialised; replaced by a restored one where a checkpoint exists.
  schedule: Any
  total_steps: int
  steps_per_epoch: int
  dropout_key: jax.Array


def build_experiment(config: ml_collections.ConfigDict, dataset: Dataset | None = None) -> Experiment:
  """Validates the config, loads the data and initialises model and optimizer state."""
  config_lib.validate(config)
  dataset = dataset or load_dataset(config.data)
  info = dataset.info
  task = tasks.build_task(info, label_smoothing=config.train.label_smoothing)
  model = build_model(config.model, num_outputs=info.num_outputs, vocab_size=info.vocab_size or None)
  epoch_steps = steps_per_epoch(dataset, config.data)
  if epoch_steps == 0:
    raise config_lib.ConfigError(
        f"data.batch_size={config.data.batch_size} exceeds the training split ({dataset.num_examples('train')} "
        f"examples or tokens); lower --config.data.batch_size.")
  total_steps = config.train.num_steps or config.train.num_epochs * epoch_steps
  tx, schedule = optim.build_optimizer(config.optimizer, total_steps)
  keys = rng_streams(config.seed)
  state = create_train_state(model, tx, sample_inputs(dataset, config.data), keys["params"])
  return Experiment(config, dataset, task, model, state, schedule, total_steps, epoch_steps, keys["dropout"])


def _eval_split_name(exp: Experiment) -> str:
  split = exp.config.train.eval_split
  return split if split in exp.dataset.splits else "test"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, dataset: Dataset | None = None,
                       show_progress: bool | None = None) -> dict[str, Any]:
  """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, and returns the final metrics.

  Holds a lock on `workdir` for the whole run, so a second run pointed at it refuses to start.
  """
  with workdir_lib.WorkdirLock(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir, dataset, show_progress)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, dataset: Dataset | None,
                        show_progress: bool | None) -> dict[str, Any]:
  tcfg = config.train
  if os.path.isdir(os.path.join(workdir, "checkpoints")):  # Resuming: the model/data config must match.
    workdir_lib.check_config_compatible(workdir, config, allow_change=tcfg.allow_config_change)
  exp = build_experiment(config, dataset)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  if jax.process_index() == 0:
    workdir_lib.write_run_info(workdir, config, sys.argv)
    if exp.dataset.tokenizer is not None:  # JSON, next to the checkpoints, so samples decode without the corpus.
      exp.dataset.tokenizer.save(os.path.join(workdir, TOKENIZER_FILE))

  eval_every = tcfg.eval_every or exp.steps_per_epoch
  checkpoint_every = tcfg.checkpoint_every or eval_every
  es = tcfg.early_stopping
  ckpt = Checkpointer(workdir, "checkpoints", keep=tcfg.keep_checkpoints, async_save=tcfg.async_checkpointing)
  best_ckpt = Checkpointer(workdir, "best", keep=1, async_save=tcfg.async_checkpointing) if es.metric else None

  train_iter = make_train_iterator(exp.dataset, config.data, seed=config.seed)
  state = exp.state
  meta: dict[str, Any] = {"best_value": None, "best_step": None, "bad_evals": 0, "stopped_early": False}
  restored = ckpt.restore(state)
  if restored is not None:
    step0, state, data_state, meta = restored
    train_iter.set_state(data_state)
    log.info("Resumed from step %d in %s", step0, workdir)
  start_step = int(jax.device_get(state.step))
  writer = MetricWriter(workdir, resume_step=start_step if restored else None)
  n_params = count_params(state.params)
  log.info("model %s: %d parameters; %d steps (%d per epoch)", config.model.name, n_params, exp.total_steps,
           exp.steps_per_epoch)

  train_step = jax.jit(make_train_step(exp.task, config.optimizer.l1, config.optimizer.l2), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(exp.task))
  eval_split = _eval_split_name(exp)
  periodic_eval_arrays = eval_arrays(exp.dataset, eval_split, config.data)

  def run_eval(s: TrainState, step: int) -> dict[str, float]:
    metrics, _, _ = evaluate_split(eval_step, s, periodic_eval_arrays, config.data.eval_batch_size, exp.task)
    writer.write(step, "eval", metrics)
    return metrics

  bar = tqdm(total=exp.total_steps, initial=start_step, unit="step", dynamic_ncols=True, leave=False,
             disable=None if show_progress is None else not show_progress)  # None: only on a terminal.

  def save(kind: str, step: int, s: TrainState, data_state: dict, m: dict) -> None:
    (best_ckpt if kind == "best" else ckpt).save(step, s, data_state, m)

  target = abstract_like(state)  # `state` is donated to the first step; keep its shapes for restores.
  if tcfg.nan_policy == "rollback" and restored is None:
    ckpt.save(0, state, train_iter.get_state(), meta)  # Something to roll back to before the first interval.

  def rollback() -> tuple[TrainState, dict]:
    _, restored_state, data_state, restored_meta = ckpt.restore(target)
    train_iter.set_state(data_state)
    return restored_state, restored_meta

  result = run_loop(state=state, train_step=train_step, dropout_key=exp.dropout_key, train_iter=train_iter,
                    total_steps=exp.total_steps, batch_size=config.data.batch_size, schedule=exp.schedule,
                    run_eval=run_eval, save=save, writer=writer, bar=bar, tcfg=tcfg, eval_every=eval_every,
                    checkpoint_every=checkpoint_every, meta=meta, rollback=rollback)
  bar.close()
  state, step, meta = result.state, result.step, result.meta
  if result.preempted:
    for c in (ckpt, best_ckpt):
      if c is not None:
        c.close()
    writer.close()
    log.warning("Stopped by %s at step %d; checkpoint saved. Rerun the same command to resume.", result.preempted, step)
    return {"step": step, "preempted": result.preempted}

  # Final test evaluation, on the best checkpoint when early stopping tracks one.
  ckpt.wait()
  final_state, final_step = state, step
  if best_ckpt is not None:
    best = best_ckpt.restore(state)
    if best is not None:
      final_step, final_state = best[0], best[1]
  test_metrics, _, _ = evaluate_split(eval_step, final_state, eval_arrays(exp.dataset, "test", config.data),
                                      config.data.eval_batch_size, exp.task)
  writer.write(step, "test", {**test_metrics, "checkpoint_step": final_step})
  writer.close()
  ckpt.close()
  if best_ckpt is not None:
    best_ckpt.close()
  summary = {"step": step, "checkpoint_step": final_step, "num_params": n_params, "compile_s": result.compile_s,
             "stopped_early": bool(meta.get("stopped_early")), "test": test_metrics,
             "best": {"metric": es.metric, "value": meta["best_value"], "step": meta["best_step"]}}
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  if tcfg.sample_tokens and exp.dataset.tokenizer is not None and jax.process_index() == 0:
    text = sample_text(exp.model, final_state.params, exp.dataset.tokenizer, tcfg.sample_prompt, tcfg.sample_tokens,
                       jax.random.key(config.seed))
    with open(os.path.join(workdir, "samples.txt"), "w") as f:
      f.write(text + "\n")
  try:
    plots.plot_learning_curves([workdir], os.path.join(workdir, "curves.png"))
  except ValueError as e:  # A run too short to have both train and eval rows.
    log.warning("No learning curves for %s: %s", workdir, e)
  return summary
