"""The step loop: dispatch steps, log every `log_every`, evaluate, early-stop, checkpoint, obey preemption.

The device is never stalled by the host: the next batch is transferred while the current step runs,
and metrics are fetched only at logging steps (one `device_get` of the window's metrics). Between logging steps
the loop runs under `jax.transfer_guard_device_to_host(train.transfer_guard)`: "disallow" turns any read of a
device value there into an error.
`train.profile_steps="a,b"` records a jax.profiler trace of steps a..b (TensorBoard's profile plugin, Perfetto).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from typing import Any, Callable

import jax
import numpy as np

from model_lib.config import ConfigError, parse_profile_steps
from model_lib.train.preemption import PreemptionGuard
from model_lib.train.step import first_nonfinite_leaf

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoopResult:
  state: Any
  step: int
  meta: dict[str, Any]
  compile_s: float
  preempted: str = ""  # Name of the signal that stopped the run, if any.


def _improved(value: float, best: float | None, mode: str) -> bool:
  if best is None:
    return True
  return value > best if mode == "max" else value < best


NONFINITE_KEYS = ("nonfinite", "nonfinite_leaf", "nonfinite_update_leaf")  # Per-step flags, not averaged.
NORM_KEYS = ("grad_norm", "param_norm")  # Logged from the window's last step that measured them (see step.py).


class NonFiniteError(FloatingPointError):
  """A NaN/Inf loss or gradient under train.nan_policy='raise' (or after too many rollbacks)."""


def _leaf_names(tree: Any) -> list[str]:
  return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _scalar(x: Any) -> Any:
  """A host scalar from a replicated value: a () array, or the first of pmap's per-device copies (n,)."""
  return np.asarray(x).reshape(-1)[0]


class StepProfiler:
  """Traces train steps `first..last` (1-based, as logged) into `log_dir`; each step is a StepTraceAnnotation."""

  def __init__(self, steps: tuple[int, int] | None, log_dir: str | None):
    self.first, self.last = steps if steps and log_dir else (0, -1)
    self.log_dir = log_dir
    self.active = False

  def annotate(self, step: int) -> Any:
    """Context for dispatching step `step`: starts the trace at `first`; a named step while tracing."""
    if step == self.first and not self.active:
      os.makedirs(self.log_dir, exist_ok=True)
      jax.profiler.start_trace(self.log_dir, create_perfetto_trace=True)
      self.active = True
      log.info("Profiling train steps %d..%d into %s", self.first, self.last, self.log_dir)
    return jax.profiler.StepTraceAnnotation("train", step_num=step) if self.active else contextlib.nullcontext()

  def done(self, step: int, outputs: Any) -> None:
    """After step `step` is dispatched: at `last`, waits for it to finish and writes the trace."""
    if self.active and step >= self.last:
      jax.block_until_ready(outputs)
      self.stop()

  def stop(self) -> None:
    if self.active:
      self.active = False
      jax.profiler.stop_trace()


_all_finite = jax.jit(lambda tree: first_nonfinite_leaf(tree) < 0)  # The train step's own per-leaf check.


def run_loop(*, state: Any, train_step: Callable, dropout_key: jax.Array, train_iter: Any, total_steps: int,
             batch_size: int, schedule: Callable, run_eval: Callable[[Any, int], dict[str, float]],
             save: Callable[[str, int, Any, dict, dict], None], writer: Any, bar: Any, tcfg: Any,
             eval_every: int, checkpoint_every: int, meta: dict[str, Any],
             rollback: Callable[[], tuple[Any, dict]] | None = None, put_batch: Callable[[Any], Any] = jax.device_put,
             profile_dir: str | None = None) -> LoopResult:
  """Runs steps from `state.step` to `total_steps`; `save(kind, step, state, data_state, meta)` with kind latest/best.

  `put_batch` places a host batch on the devices (the runtime's sharding); `batch_size` is the global batch.

  Non-finite steps (flagged by the train step, which already dropped their update) are handled at the
  next logging step by `tcfg.nan_policy`: 'raise' stops naming the step and the first non-finite gradient
  leaf, 'skip' counts them, 'rollback' calls `rollback()` -> (restored state, restored meta) and lowers the
  learning rate by `tcfg.rollback_lr_factor`.
  """
  step = int(_scalar(jax.device_get(state.step)))
  es = tcfg.early_stopping
  if step >= total_steps or meta.get("stopped_early"):
    return LoopResult(state, step, meta, 0.0)
  batch = put_batch(next(train_iter))
  t0 = time.perf_counter()
  compiled = train_step.lower(state, batch, dropout_key).compile()  # Compiled once; a shape change would raise.
  compile_s = time.perf_counter() - t0
  first_log, last_measured = True, True
  leaf_names = _leaf_names(state.params)
  window: list[dict[str, jax.Array]] = []
  window_start = time.perf_counter()
  profiler = StepProfiler(parse_profile_steps(tcfg.get("profile_steps", "")), profile_dir)
  transfer_guard = tcfg.get("transfer_guard", "allow")
  with PreemptionGuard() as guard, contextlib.ExitStack() as cleanup:
    cleanup.callback(profiler.stop)
    while step < total_steps:
      with jax.transfer_guard_device_to_host(transfer_guard):
        with profiler.annotate(step + 1):
          state, step_metrics = compiled(state, batch, dropout_key)
        step += 1
        profiler.done(step, step_metrics)
        window.append(step_metrics)
        last = step == total_steps
        data_state = train_iter.get_state()  # Position after the batches consumed so far.
        if not last:
          batch = put_batch(next(train_iter))  # Transfer the next batch while this step runs.
      evaluate = step % eval_every == 0 or last
      checkpoint = step % checkpoint_every == 0 or last or guard.requested
      # Also before every evaluation and checkpoint, so a non-finite step (whose update only nan_policy=skip
      # drops in the step itself) is handled before its state can be evaluated or saved.
      flushed = step % tcfg.log_every == 0 or last or evaluate or checkpoint
      if flushed:
        host = [{k: _scalar(v) for k, v in m.items()}  # The only device->host sync between evaluations.
                for m in jax.device_get(window)]
        elapsed = time.perf_counter() - window_start
        bad = [(step - len(host) + 1 + i, m) for i, m in enumerate(host) if m.get("nonfinite", 0) > 0]
        row = {k: float(np.mean([m[k] for m in host])) for k in host[0]
               if k not in NONFINITE_KEYS + NORM_KEYS + ("measured",)}
        measured = [m for m in host if m.get("measured", 1.0) > 0]
        last_measured = host[-1].get("measured", 1.0) > 0
        if measured:
          row.update({k: measured[-1][k] for k in NORM_KEYS if k in measured[-1]})
        row["learning_rate"] = float(schedule(step - 1))
        row["examples_per_sec"] = len(host) * batch_size / max(elapsed, 1e-9)
        if first_log:
          row["compile_s"], first_log = compile_s, False
        if bad:
          meta["nonfinite_steps"] = meta.get("nonfinite_steps", 0) + len(bad)
          row["nonfinite_steps"] = meta["nonfinite_steps"]
        writer.write(step, "train", row)
        if bad:
          restored = _handle_nonfinite(bad, leaf_names, tcfg, meta, state, rollback)
          if restored is not None:  # Rolled back: continue from the restored step with fresh batches.
            state, step = restored, int(_scalar(jax.device_get(restored.step)))
            batch = put_batch(next(train_iter))
            window, window_start = [], time.perf_counter()
            continue
        bar.set_postfix(loss=f"{row['loss']:.4f}", ex_s=f"{row['examples_per_sec']:.0f}")
        bar.update(len(host))
        window, window_start = [], time.perf_counter()
      if evaluate:
        metrics = run_eval(state, step)
        if es.metric:
          if es.metric not in metrics:
            raise ConfigError(f"train.early_stopping.metric '{es.metric}' is not an eval metric of this task; "
                              f"choose one of {sorted(metrics)}.")
          if _improved(metrics[es.metric], meta["best_value"], es.mode):
            meta.update(best_value=metrics[es.metric], best_step=step, bad_evals=0)
            save("best", step, state, data_state, meta)
          else:
            meta["bad_evals"] += 1
            meta["stopped_early"] = bool(es.patience) and meta["bad_evals"] >= es.patience
        window_start = time.perf_counter()  # Evaluation time is not training throughput.
      # A signal that arrives after this step's metrics were read stops (and saves) at the next step.
      stop = meta.get("stopped_early") or (guard.requested and flushed)
      if checkpoint or stop:
        # A preemption can land on a step that checked only its loss: verify the parameters before saving them.
        if guard.requested and not last_measured and not bool(_all_finite(state.params)):
          log.warning("Not saving step %d: its parameters are non-finite; the last good checkpoint is kept.", step)
        else:
          save("latest", step, state, data_state, meta)
      if meta.get("stopped_early"):
        log.info("Early stopping at step %d: %s has not improved for %d evaluations (best %.5g at step %d).",
                 step, es.metric, es.patience, meta["best_value"], meta["best_step"])
      if stop:
        break
  return LoopResult(state, step, meta, compile_s, guard.signal_name if guard.requested else "")


def _handle_nonfinite(bad: list[tuple[int, dict]], leaf_names: list[str], tcfg: Any, meta: dict[str, Any], state: Any,
                      rollback: Callable | None) -> Any:
  """Applies train.nan_policy to the last window's non-finite steps; returns the restored state after a rollback."""
  first_step, m = bad[0]
  leaf, update_leaf = int(m["nonfinite_leaf"]), int(m.get("nonfinite_update_leaf", -1))
  if leaf >= 0:
    where = f"first non-finite gradient leaf {leaf_names[leaf]}"
  elif update_leaf >= 0:
    where = f"the update overflowed parameter leaf {leaf_names[update_leaf]}"
  else:
    where = "the loss is non-finite"
  what = f"Non-finite loss/gradient at step {first_step} ({where}; {len(bad)} bad step(s) since the last log)"
  if tcfg.nan_policy == "skip":
    log.warning("%s: updates dropped (train.nan_policy=skip, %d so far).", what, meta["nonfinite_steps"])
    return None
  if tcfg.nan_policy == "rollback" and rollback is not None:
    rollbacks, bad_total = meta.get("rollbacks", 0) + 1, meta["nonfinite_steps"]
    if rollbacks > tcfg.max_rollbacks:
      raise NonFiniteError(f"{what}; gave up after train.max_rollbacks={tcfg.max_rollbacks} rollbacks. Lower "
                           f"--config.optimizer.learning_rate or set --config.optimizer.grad_clip_norm.")
    scale = float(_scalar(jax.device_get(state.lr_scale))) * tcfg.rollback_lr_factor
    restored, restored_meta = rollback()
    meta.clear()
    meta.update(restored_meta, rollbacks=rollbacks, nonfinite_steps=bad_total)
    old = restored.lr_scale  # Same shape and sharding (on every process), so the compiled step takes it as before.
    value = np.full(old.shape, scale, np.float32)
    restored = restored.replace(lr_scale=jax.make_array_from_callback(old.shape, old.sharding, lambda i: value[i]))
    log.warning("%s: rolled back to step %d with learning-rate scale %.3g (rollback %d of at most %d).", what,
                int(_scalar(jax.device_get(restored.step))), scale, rollbacks, tcfg.max_rollbacks)
    return restored
  raise NonFiniteError(f"{what}. Lower --config.optimizer.learning_rate, set --config.optimizer.grad_clip_norm, or "
                       f"use --config.train.nan_policy=skip|rollback.")
