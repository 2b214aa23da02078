"""Reading finished (or running) workdirs back: configs, summaries, and a markdown comparison table."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

from model_lib.plots import NOT_CURVES, learning_curve_data, run_names

LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "perplexity", "error")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested dicts to `{'a.b.c': value}`."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _read_json(path: str) -> dict[str, Any] | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_config(workdir: str) -> dict[str, Any]:
  """The flattened `<workdir>/config.json` ({} when the run has none)."""
  return flatten(_read_json(os.path.join(workdir, "config.json")) or {})


def config_differences(configs: Sequence[dict[str, Any]]) -> list[str]:
  """Flattened keys whose values (or presence) are not the same in every config, sorted."""
  keys = sorted({k for c in configs for k in c})
  missing = object()
  return [k for k in keys if len({json.dumps(c.get(k, missing), sort_keys=True, default=repr) for c in configs}) > 1]


def lower_is_better(metric: str) -> bool:
  """Direction of a metric name: losses and errors are minimised, everything else maximised."""
  return any(metric == n or metric.endswith("_" + n) or metric.startswith(n + "_") for n in LOWER_IS_BETTER)


def _fmt(v: Any) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:.4g}" if math.isfinite(v) else str(v)
  if isinstance(v, (list, tuple)):
    return "(" + ", ".join(_fmt(x) for x in v) + ("," if len(v) == 1 else "") + ")"
  return str(v).replace("|", "\\|")


def run_results(workdir: str) -> dict[str, Any]:
  """Final step and train loss, best value (and step) of each eval metric, test metrics of one run."""
  name = run_names([workdir])[0]
  splits = learning_curve_data([workdir])[name]
  summary = _read_json(os.path.join(workdir, "summary.json")) or {}
  out: dict[str, Any] = {"step": summary.get("step"), "train_loss": None, "best_eval": {}, "test": {},
                         "checkpoint_step": summary.get("checkpoint_step")}
  if "loss" in splits.get("train", {}):
    steps, values = splits["train"]["loss"]
    out["train_loss"] = float(values[-1])
    out["step"] = out["step"] if out["step"] is not None else int(steps[-1])
  for metric, (steps, values) in splits.get("eval", {}).items():
    finite = [(v, s) for s, v in zip(steps, values) if math.isfinite(v)]
    if finite:
      v, s = (min if lower_is_better(metric) else max)(finite, key=lambda p: p[0])
      out["best_eval"][metric] = (float(v), int(s))
  test = summary.get("test") or {m: float(vals[-1]) for m, (_, vals) in splits.get("test", {}).items()}
  out["test"] = {k: v for k, v in test.items() if k not in NOT_CURVES}
  return out


def compare_runs(workdirs: Sequence[str]) -> str:
  """A markdown table, one column per run: config keys that differ, then final/best/test metrics."""
  missing = [w for w in workdirs if not os.path.isdir(w)]
  if missing:
    raise FileNotFoundError(f"Not a directory: {', '.join(missing)}.")
  names = run_names(workdirs)
  configs = [load_config(w) for w in workdirs]
  results = [run_results(w) for w in workdirs]
  rows: list[tuple[str, list[str]]] = []
  for key in config_differences([c for c in configs if c]):  # A run without config.json differs in nothing.
    rows.append((f"`{key}`", [_fmt(c.get(key)) for c in configs]))
  rows.append(("final step", [_fmt(r["step"]) for r in results]))
  rows.append(("train loss (final)", [_fmt(r["train_loss"]) for r in results]))
  for metric in _ordered(r["best_eval"] for r in results):
    arrow = "min" if lower_is_better(metric) else "max"
    cells = [f"{_fmt(r['best_eval'][metric][0])} @{r['best_eval'][metric][1]}" if metric in r["best_eval"] else "-"
             for r in results]
    rows.append((f"eval {metric} (best, {arrow})", cells))
  rows.append(("test on checkpoint step", [_fmt(r["checkpoint_step"]) for r in results]))
  for metric in _ordered(r["test"] for r in results):
    rows.append((f"test {metric}", [_fmt(r["test"].get(metric)) for r in results]))
  header = ["", *names]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(names)) + "|"]
  lines += ["| " + " | ".join([label, *cells]) + " |" for label, cells in rows]
  return "\n".join(lines)


def _ordered(dicts: Any) -> list[str]:
  seen: dict[str, None] = {}
  for d in dicts:
    seen.update(dict.fromkeys(d))
  return sorted(seen, key=lambda m: (m != "loss", list(seen).index(m)))
