"""Measured compression experiments: accuracy vs sparsity, float vs int8 (PTQ / QAT), as JSON, tables and plots."""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Sequence

import jax
import ml_collections

from model_lib.compress import prune, quantize


def sparsity_sweep(config: ml_collections.ConfigDict, workdir: str, sparsities: Sequence[float],
                   show_progress: bool | None = None) -> dict[str, Any]:
  """Trains one run per sparsity (gradual magnitude pruning, global) and reports exact sparsity and test accuracy.

  Writes <workdir>/pruning.json, pruning.md and sparsity_vs_accuracy.png. Runs evaluate their final
  state (not an early best, which could predate the final sparsity).
  """
  from model_lib.checkpoint_inspect import restore_raw
  from model_lib.train.trainer import train_and_evaluate

  rows = []
  for s in sparsities:
    cfg = copy.deepcopy(config)
    cfg.optimizer.prune.sparsity = float(s)
    cfg.train.early_stopping.metric = ""
    run_dir = os.path.join(workdir, f"sparsity_{s:g}")
    summary = train_and_evaluate(cfg, run_dir, show_progress=show_progress)
    params = restore_raw(os.path.join(run_dir, "checkpoints"), summary["step"], keys=("params",))["params"]
    report = prune.sparsity_report(params)
    rows.append({"target_sparsity": float(s), "achieved_sparsity": report["overall"], "layers": report["layers"],
                 "test_accuracy": summary["test"]["accuracy"], "workdir": run_dir})
  result = {"runs": rows}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "pruning.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(workdir, "pruning.md"), "w") as f:
    f.write(pruning_table(result) + "\n")
  _plot_sparsity(rows, os.path.join(workdir, "sparsity_vs_accuracy.png"))
  return result


def pruning_table(result: dict[str, Any]) -> str:
  """Markdown: target and achieved sparsity, per-layer sparsity, test accuracy."""
  layers = list(result["runs"][0]["layers"])
  lines = ["| target | achieved | " + " | ".join(layers) + " | test accuracy |",
           "|---|---|" + "---|" * len(layers) + "---|"]
  for r in result["runs"]:
    per = " | ".join(f"{r['layers'][k]['sparsity']:.4f}" for k in layers)
    lines.append(f"| {r['target_sparsity']:.2f} | {r['achieved_sparsity']:.4f} | {per} | {r['test_accuracy']:.4f} |")
  return "\n".join(lines)


def _plot_sparsity(rows: list[dict[str, Any]], out_path: str) -> None:
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5, 3.5), dpi=100)
  ax = fig.add_subplot(1, 1, 1)
  ax.plot([r["achieved_sparsity"] for r in rows], [r["test_accuracy"] for r in rows], "o-")
  for r in rows:
    ax.annotate(f"{r['test_accuracy']:.4f}", (r["achieved_sparsity"], r["test_accuracy"]), textcoords="offset points",
                xytext=(0, 6), ha="center", fontsize=8)
  ax.set_xlabel("weight sparsity (kernels)")
  ax.set_ylabel("test accuracy")
  ax.set_title("magnitude pruning")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_path)


def quantization_report(workdir: str, split: str = "test") -> dict[str, Any]:
  """Float vs int8 post-training quantization of a trained run: accuracy and serialized weight bytes."""
  from model_lib.train.evaluate import evaluate_split
  from model_lib.train.evaluation_run import restore_for_eval
  from model_lib.data.pipeline import eval_arrays
  from model_lib.train.step import make_eval_step

  exp, state, step, kind = restore_for_eval(workdir)
  eval_step = jax.jit(make_eval_step(exp.task))
  arrays = eval_arrays(exp.dataset, split, exp.config.data)
  batch = exp.config.data.eval_batch_size
  float_metrics = evaluate_split(eval_step, state, arrays, batch, exp.task)[0]
  qparams = quantize.quantize_params(state.params)
  int8_metrics = evaluate_split(eval_step, state.replace(params=quantize.dequantize_params(qparams)), arrays, batch,
                                exp.task)[0]
  return {"workdir": workdir, "checkpoint_step": step, "qat": bool(exp.config.get("quant", {}).get("qat", False)),
          "float_accuracy": float_metrics["accuracy"], "int8_accuracy": int8_metrics["accuracy"],
          "float_bytes": quantize.serialized_bytes(state.params), "int8_bytes": quantize.serialized_bytes(qparams)}
