"""`train_and_evaluate(config, workdir)`: wires data, model, optimizer, steps and checkpoints together.

Flow: process set-up (jax.distributed, compilation cache) -> mesh from `config.mesh`, checked against the
devices -> data, model, optimizer -> abstract state -> shardings -> state initialised in its shards ->
restore into those shardings (any earlier mesh) -> the runtime's jitted (or pmapped) steps -> loop. One CPU
device is the 1x1x1 mesh of the same path. Every process loads its own share of each batch; only process 0
writes logs and files, all of them save checkpoints together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from model_lib import config as config_lib
from model_lib import optim, parallel, plots
from model_lib import workdir as workdir_lib
from model_lib.checkpoint import Checkpointer, abstract_like
from model_lib.data import Dataset, load_dataset
from model_lib.data.pipeline import eval_arrays, make_train_iterator, sample_inputs, steps_per_epoch
from model_lib.models import build_model
from model_lib.compress.distill import Distillation, load_teacher
from model_lib.compress.quantize import fake_quant_params
from model_lib.sampling import sample_text
from model_lib.transfer import load_params, partial_restore
from model_lib.train import tasks
from model_lib.train.evaluate import evaluate_split
from model_lib.train.loop import run_loop
from model_lib.train.state import TrainState, count_params, rng_streams
from model_lib.train.step import make_eval_step, make_train_step, measure_at
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
  mesh: Mesh | None = None  # The (data, fsdp, tensor) device mesh `state` lives on.
  rules: str = "dp"  # The resolved logical-axis rule set (parallel.rules).
  shardings: Any = None  # A TrainState of NamedShardings: the layout of `state` and of restore targets.


def process_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.data` with this process's share of the global batch (data.batch_size / process count)."""
  data = ml_collections.ConfigDict(config.data.to_dict())
  data.batch_size = config.data.batch_size // jax.process_count()
  return data


def data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.data`, reusing `<init_from>/tokenizer.json` when fine-tuning a text model (so token ids match)."""
  data = config.data
  reuse = os.path.join(config.init_from, TOKENIZER_FILE) if config.init_from else ""
  if reuse and not data.tokenizer_path and os.path.exists(reuse):
    data = ml_collections.ConfigDict(data.to_dict())
    data.tokenizer_path = reuse
    log.info("Using the tokenizer of %s", config.init_from)
  return data


def param_transform(config: ml_collections.ConfigDict) -> Any:
  """What the forward pass applies to the stored parameters: int8 fake quantization under `quant.qat`."""
  return fake_quant_params if config.quant.qat else None


def build_experiment(config: ml_collections.ConfigDict, dataset: Dataset | None = None) -> Experiment:
  """Validates the config and the mesh, loads the data and initialises model and optimizer state in their shards."""
  config_lib.validate(config)
  parallel.setup(config)
  mesh = parallel.make_mesh(config)  # Checked against the devices before any data is loaded or code compiled.
  rules = parallel.resolve_rules(parallel.mesh.section(config, "mesh").rules, dict(mesh.shape))
  pmap = parallel.mesh.section(config, "parallel").mode == "pmap"
  dataset = dataset or load_dataset(data_config(config))
  info = dataset.info
  task = tasks.build_task(info, label_smoothing=config.train.label_smoothing)
  if config.distill.teacher_workdir:  # Frozen teacher inside the same jitted step.
    task = Distillation(task, *load_teacher(config.distill.teacher_workdir), config.distill.alpha,
                        config.distill.temperature)
  model = build_model(config.model, num_outputs=info.num_outputs, vocab_size=info.vocab_size or None,
                      batch_norm_axis_name=parallel.PmapRuntime.axis_name if pmap else None)
  epoch_steps = steps_per_epoch(dataset, process_data_config(config), shard_count=jax.process_count())
  if epoch_steps == 0:
    raise config_lib.ConfigError(
        f"data.batch_size={config.data.batch_size} exceeds the training split ({dataset.num_examples('train')} "
        f"examples or tokens); lower --config.data.batch_size.")
  total_steps = config.train.num_steps or config.train.num_epochs * epoch_steps
  keys = rng_streams(config.seed)
  sample_x = sample_inputs(dataset, config.data)
  param_shapes = jax.eval_shape(lambda: nn.meta.unbox(model.init(keys["params"], sample_x, train=False))["params"])
  tx, schedule = optim.build_optimizer(config.optimizer, total_steps, params=param_shapes)
  state, shardings = parallel.init_sharded_state(model, tx, sample_x, keys["params"], mesh, rules)
  return Experiment(config, dataset, task, model, state, schedule, total_steps, epoch_steps, keys["dropout"], mesh,
                    rules, shardings)


def _write_atomic(path: str, text: str) -> None:
  """Writes via a temporary file and a rename, so a kill never leaves a half-written file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def _init_from(config: ml_collections.ConfigDict, exp: Experiment, state: TrainState, report_dir: str | None) -> TrainState:
  """Fresh state whose parameters come from `config.init_from` wherever path and shape match (fine-tuning)."""
  source = load_params(config.init_from, None if config.init_from_step < 0 else config.init_from_step)
  params, report = partial_restore(jax.device_get(state.params), source)
  params = jax.device_put(params, exp.shardings.params)
  opt_state = jax.jit(state.tx.init, out_shardings=exp.shardings.opt_state)(params)
  log.info("init_from %s: %d tensors loaded; fresh: %s; resized (fresh): %s", config.init_from, len(report["loaded"]),
           report["new"] or "none", report["resized"] or "none")
  if report_dir is not None:
    _write_atomic(os.path.join(report_dir, "init_from.json"), json.dumps({"source": config.init_from, **report},
                                                                          indent=2))
  return state.replace(params=params, opt_state=opt_state)


def _profile_dir(workdir: str) -> str:
  """DIR/profile; with several processes one subfolder each (on one host their trace files would collide)."""
  base = os.path.join(workdir, "profile")
  return base if jax.process_count() == 1 else os.path.join(base, f"process_{jax.process_index()}")


def _eval_split_name(exp: Experiment) -> str:
  split = exp.config.train.eval_split
  return split if split in exp.dataset.splits else "test"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, dataset: Dataset | None = None,
                       show_progress: bool | None = None) -> dict[str, Any]:
  """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, and returns the final metrics.

  Holds a lock on `workdir` for the whole run, so a second run pointed at it refuses to start.
  """
  config_lib.validate(config)
  parallel.setup(config)  # Before anything touches a device (jax.distributed must come first).
  with workdir_lib.WorkdirLock(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir, dataset, show_progress)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, dataset: Dataset | None,
                        show_progress: bool | None) -> dict[str, Any]:
  tcfg = config.train
  if os.path.isdir(os.path.join(workdir, "checkpoints")):  # Resuming: the model/data config must match.
    workdir_lib.check_config_compatible(workdir, config, allow_change=tcfg.allow_config_change)
  exp = build_experiment(config, dataset)
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  eval_every = tcfg.eval_every or exp.steps_per_epoch
  checkpoint_every = tcfg.checkpoint_every or eval_every
  es = tcfg.early_stopping
  ckpt = Checkpointer(workdir, "checkpoints", keep=tcfg.keep_checkpoints, async_save=tcfg.async_checkpointing)
  best_ckpt = Checkpointer(workdir, "best", keep=1, async_save=tcfg.async_checkpointing) if es.metric else None

  # Each process reads its own shard of the training data: data.batch_size / process_count rows per step.
  train_iter = make_train_iterator(exp.dataset, process_data_config(config), seed=config.seed,
                                   shard_index=jax.process_index(), shard_count=jax.process_count())
  state = exp.state
  meta: dict[str, Any] = {"best_value": None, "best_step": None, "bad_evals": 0, "stopped_early": False}
  restored = ckpt.restore(state)  # Into the current mesh's shardings, whatever mesh wrote the checkpoint.
  if restored is not None:
    step0, state, data_state, meta = restored
    train_iter.set_state(data_state)
    log.info("Resumed from step %d in %s", step0, workdir)
  elif config.init_from:
    state = _init_from(config, exp, state, workdir if is_main else None)
  if is_main:  # Only once the run is known to be compatible (a refused resume must not overwrite them).
    _write_atomic(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2, sort_keys=True))
    workdir_lib.write_run_info(workdir, config, sys.argv)
    if exp.dataset.tokenizer is not None:  # JSON, next to the checkpoints, so samples decode without the corpus.
      exp.dataset.tokenizer.save(os.path.join(workdir, TOKENIZER_FILE))
  start_step = int(jax.device_get(state.step))
  writer = MetricWriter(workdir, resume_step=start_step if restored else None, enabled=is_main)
  train_x = exp.dataset.split("train").get("x")
  if restored is None and train_x is not None and train_x.ndim in (3, 4):  # Image models: what the model sees.
    writer.write_images("train/inputs", train_x[:8])
  n_params = count_params(state.params)
  log.info("model %s: %d parameters; %d steps (%d per epoch); mesh %s, rules %s, %s mode", config.model.name,
           n_params, exp.total_steps, exp.steps_per_epoch, dict(exp.mesh.shape), exp.rules,
           parallel.mesh.section(config, "parallel").mode)

  runtime = parallel.make_runtime(config, exp.mesh, exp.shardings, exp.rules)
  train_step = runtime.jit_train_step(make_train_step(exp.task, config.optimizer.l1, config.optimizer.l2,
                                                      guard_nonfinite=tcfg.nan_policy == "skip",
                                                      measure=measure_at(tcfg.log_every, eval_every, checkpoint_every,
                                                                         last=exp.total_steps),
                                                      axis_name=runtime.axis_name,
                                                      param_transform=param_transform(config)))
  eval_step = runtime.jit_eval_step(make_eval_step(exp.task, axis_name=runtime.axis_name,
                                                   param_transform=param_transform(config)))
  eval_batch_size = runtime.eval_batch_size(config.data.eval_batch_size)
  eval_split = _eval_split_name(exp)
  periodic_eval_arrays = eval_arrays(exp.dataset, eval_split, config.data)

  def run_eval(s: TrainState, step: int) -> dict[str, float]:
    metrics, _, _ = evaluate_split(eval_step, s, periodic_eval_arrays, eval_batch_size, exp.task)
    writer.write(step, "eval", metrics)
    return metrics

  bar = tqdm(total=exp.total_steps, initial=start_step, unit="step", dynamic_ncols=True, leave=False,
             disable=(None if show_progress is None else not show_progress) if is_main else True)  # None: a terminal.

  def save(kind: str, step: int, s: TrainState, data_state: dict, m: dict) -> None:
    manager, other = (best_ckpt, ckpt) if kind == "best" else (ckpt, best_ckpt)
    if other is not None and jax.process_count() > 1:
      other.wait()  # Orbax names its cross-process barriers by step alone: two managers must not save at once.
    manager.save(step, runtime.to_global(s), data_state, m)

  target = abstract_like(state)  # `state` is donated to the first step; keep its shapes for restores.
  if tcfg.nan_policy == "rollback" and restored is None:
    ckpt.save(0, state, train_iter.get_state(), meta)  # Something to roll back to before the first interval.

  def rollback() -> tuple[TrainState, dict]:
    restored_step, restored_state, data_state, restored_meta = ckpt.restore(target)
    train_iter.set_state(data_state)
    writer.rewind(restored_step)  # The rolled-back steps will be logged again.
    return runtime.from_global(restored_state), restored_meta

  try:
    result = run_loop(state=runtime.from_global(state), train_step=train_step, dropout_key=exp.dropout_key,
                      train_iter=train_iter, total_steps=exp.total_steps, batch_size=config.data.batch_size,
                      schedule=exp.schedule, run_eval=run_eval, save=save, writer=writer, bar=bar, tcfg=tcfg,
                      eval_every=eval_every, checkpoint_every=checkpoint_every, meta=meta, rollback=rollback,
                      put_batch=runtime.put_batch, profile_dir=_profile_dir(workdir))
  except BaseException:  # Let in-flight saves commit (and the lock outlive them) before the error propagates.
    for c in (ckpt, best_ckpt):
      if c is not None:
        c.close()
    writer.close()
    raise
  bar.close()
  state, step, meta = result.state, result.step, result.meta
  if result.preempted:
    for c in (ckpt, best_ckpt):
      if c is not None:
        c.close()
    writer.close()
    log.warning("Stopped by %s at step %d. Rerun the same command to resume from the last checkpoint.",
                result.preempted, step)
    return {"step": step, "preempted": result.preempted}

  # Final test evaluation, on the best checkpoint when early stopping tracks one.
  ckpt.wait()
  final_state, final_step = state, step
  if best_ckpt is not None:
    best = best_ckpt.restore(target)
    if best is not None:
      final_step, final_state = best[0], runtime.from_global(best[1])
  test_metrics, _, _ = evaluate_split(eval_step, final_state, eval_arrays(exp.dataset, "test", config.data),
                                      eval_batch_size, exp.task)
  writer.write(step, "test", {**test_metrics, "checkpoint_step": final_step})
  writer.close()
  ckpt.close()
  if best_ckpt is not None:
    best_ckpt.close()
  summary = {"step": step, "checkpoint_step": final_step, "num_params": n_params, "compile_s": result.compile_s,
             "stopped_early": bool(meta.get("stopped_early")), "test": test_metrics,
             "best": {"metric": es.metric, "value": meta["best_value"], "step": meta["best_step"]}}
  if is_main:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  if tcfg.sample_tokens and exp.dataset.tokenizer is not None:
    params = runtime.to_global(final_state).params
    if jax.process_count() > 1:  # Every process takes part in the gather; process 0 then samples alone.
      params = jax.tree.map(np.asarray, multihost_utils.process_allgather(params, tiled=True))
    if is_main:
      text = sample_text(exp.model, params, exp.dataset.tokenizer, tcfg.sample_prompt, tcfg.sample_tokens,
                         jax.random.key(config.seed))
      with open(os.path.join(workdir, "samples.txt"), "w") as f:
        f.write(text + "\n")
  if is_main:
    try:
      plots.plot_learning_curves([workdir], os.path.join(workdir, "curves.png"))
    except ValueError as e:  # A run too short to have both train and eval rows.
      log.warning("No learning curves for %s: %s", workdir, e)
  return summary
