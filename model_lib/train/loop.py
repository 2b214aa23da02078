"""The step loop: dispatch steps, log every `log_every`, evaluate, early-stop, checkpoint, obey preemption.

The device is never stalled by the host: the next batch is transferred while the current step runs,
and metrics are fetched only at logging steps (one `device_get` of the window's metrics).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import jax
import numpy as np

from model_lib.config import ConfigError
from model_lib.train.preemption import PreemptionGuard

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


def run_loop(*, state: Any, train_step: Callable, dropout_key: jax.Array, train_iter: Any, total_steps: int,
             batch_size: int, schedule: Callable, run_eval: Callable[[Any, int], dict[str, float]],
             save: Callable[[str, int, Any, dict, dict], None], writer: Any, bar: Any, tcfg: Any,
             eval_every: int, checkpoint_every: int, meta: dict[str, Any]) -> LoopResult:
  """Runs steps from `state.step` to `total_steps`; `save(kind, step, state, data_state, meta)` with kind latest/best."""
  step = int(jax.device_get(state.step))
  es = tcfg.early_stopping
  if step >= total_steps or meta.get("stopped_early"):
    return LoopResult(state, step, meta, 0.0)
  batch = jax.device_put(next(train_iter))
  t0 = time.perf_counter()
  compiled = train_step.lower(state, batch, dropout_key).compile()  # Compiled once; a shape change would raise.
  compile_s = time.perf_counter() - t0
  first_log = True
  window: list[dict[str, jax.Array]] = []
  window_start = time.perf_counter()
  with PreemptionGuard() as guard:
    while step < total_steps:
      state, step_metrics = compiled(state, batch, dropout_key)
      step += 1
      window.append(step_metrics)
      last = step == total_steps
      data_state = train_iter.get_state()  # Position after the batches consumed so far.
      if not last:
        batch = jax.device_put(next(train_iter))  # Transfer the next batch while this step runs.
      if step % tcfg.log_every == 0 or last:
        host = jax.device_get(window)  # The only device->host sync between evaluations.
        elapsed = time.perf_counter() - window_start
        row = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        row["learning_rate"] = float(schedule(step - 1))
        row["examples_per_sec"] = len(host) * batch_size / max(elapsed, 1e-9)
        if first_log:
          row["compile_s"], first_log = compile_s, False
        writer.write(step, "train", row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", ex_s=f"{row['examples_per_sec']:.0f}")
        bar.update(len(host))
        window, window_start = [], time.perf_counter()
      if step % eval_every == 0 or last:
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
      stop = meta.get("stopped_early") or guard.requested
      if step % checkpoint_every == 0 or last or stop:
        save("latest", step, state, data_state, meta)
      if meta.get("stopped_early"):
        log.info("Early stopping at step %d: %s has not improved for %d evaluations (best %.5g at step %d).",
                 step, es.metric, es.patience, meta["best_value"], meta["best_step"])
      if stop:
        break
  return LoopResult(state, step, meta, compile_s, guard.signal_name if guard.requested else "")
