"""model_lib vs a minimal Flax step vs PyTorch eager on six CPU workloads, timed interleaved in one process.

Each round times `steps` steps of every framework in turn, so a slow spell of the machine hits all of them; the
step time is the median over rounds. All three see the same synthetic batches and train with AdamW.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from typing import Any, Callable

import jax
import ml_collections

from model_lib.config import base_config, set_path
from model_lib.parallel import benchmark as bench

LEARNING_RATE, WEIGHT_DECAY = 1e-3, 0.01


@dataclasses.dataclass(frozen=True)
class Peer:
  """A workload: its batch size, model_lib config changes and synthetic-data spec."""

  batch: int
  configure: Callable[[ml_collections.ConfigDict], None]
  spec: bench.DataSpec
  definition: str


def _mlp(c):
  c.model.update(name="mlp", hidden_sizes=(512, 512), dropout=0.2)
  c.data.name = "mnist"


def _cnn(c):
  c.model.update(name="cnn", features=(32, 64), kernel_size=3, padding="VALID", pool_every=1, dense_sizes=(128,))
  c.data.name = "mnist"


def _lstm(c):
  c.model.update(name="lstm_classifier", vocab_size=10000, embed_dim=128, hidden_size=128)
  c.data.update(name="sst2", max_len=128, vocab_size=10000)


def _gpt(layers, heads, width, context):
  def configure(c):
    c.model.update(name="gpt", num_layers=layers, num_heads=heads, embed_dim=width, mlp_dim=4 * width,
                   max_len=context, tie_embeddings=True)
    c.data.update(name="tiny_shakespeare", seq_len=context)
  return configure


def _vit(c):
  c.model.update(name="vit", image_size=32, patch_size=4, embed_dim=192, num_layers=6, num_heads=3, mlp_dim=768,
                 pool="cls")
  c.data.name = "cifar10"


_CHARS = bench.DataSpec("lm", num_outputs=65, tokens="seq_len", vocab_size=65)
PEERS: dict[str, Peer] = {
    "mlp": Peer(128, _mlp, bench.DATA_SPECS["mnist"], "784-512-512-10 relu, dropout 0.2"),
    "cnn": Peer(128, _cnn, bench.DATA_SPECS["mnist"], "conv3x3x32-pool-conv3x3x64-pool-dense128-dense10 (VALID)"),
    "lstm": Peer(64, _lstm, bench.DATA_SPECS["sst2"], "Embedding(10000,128) -> LSTM(128) x 128 tokens -> Dense(1), BCE"),
    "gpt": Peer(12, _gpt(4, 4, 128, 64), _CHARS, "4 layers, 4 heads, width 128, context 64, vocab 65, tied"),
    "gpt_m": Peer(16, _gpt(6, 6, 384, 256), _CHARS, "6 layers, 6 heads, width 384, context 256, vocab 65, tied"),
    "vit": Peer(64, _vit, bench.DATA_SPECS["cifar10"], "32x32x3, patch 4, width 192, depth 6, heads 3, MLP 768, cls"),
}


def peer_config(name: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The model_lib config of workload `name` (AdamW, constant learning rate), with dotted-key `overrides`."""
  c = base_config()
  PEERS[name].configure(c)
  c.data.batch_size = PEERS[name].batch
  c.optimizer.update(name="adamw", learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
  c.optimizer.schedule.name = "constant"
  c.train.num_steps = 1000
  for key, value in (overrides or {}).items():
    set_path(c, key, value)
  return c


def run_peers(names: list[str], rounds: int = 7, steps: int = 5, warmup: int = 2, threads: int = 0,
              torch: bool = True, minimal: bool = True, overrides: dict[str, Any] | None = None,
              log: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
  """One row per workload: step ms (median over rounds), examples/s, compile s and param count per framework."""
  rows = []
  for name in names:
    if name not in PEERS:
      raise ValueError(f"Unknown workload '{name}'; choose from {list(PEERS)}.")
    peer = PEERS[name]
    config = peer_config(name, overrides)
    ours = bench.prepare(config, peer.spec)
    batches = bench.synthetic_batches(config, peer.spec, 2, peer.batch)
    runners: dict[str, Any] = {"model_lib": ours}
    if minimal:
      from benchmarks.flax_minimal import FlaxStep
      runners["flax_minimal"] = FlaxStep(name, batches, LEARNING_RATE, WEIGHT_DECAY)
    if torch:
      from benchmarks.torch_peers import TorchStep
      runners["pytorch"] = TorchStep(name, batches, LEARNING_RATE, WEIGHT_DECAY, threads or _cpu_threads())
    compile_s = {"model_lib": ours.compile_s, "flax_minimal": getattr(runners.get("flax_minimal"), "compile_s", None)}
    if torch:
      compile_s["pytorch"] = runners["pytorch"].run(1)  # Eager: the first step's one-time costs.
    for runner in runners.values():
      runner.run(warmup)
    # Fast steps get longer windows (>= ~0.2 s), so the one wait per window does not count as step time.
    probe = max(runner.run(1) for runner in runners.values())
    n = max(steps, math.ceil(0.2 / max(probe, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    for r in range(rounds):
      # Each round starts with the next framework, so none always follows PyTorch, whose OpenMP threads keep
      # spinning for a while after its last op; a few untimed steps first let them go idle and warm this one.
      for key in order[r % len(order):] + order[:r % len(order)]:
        runners[key].run(max(1, n // 4))
        times[key].append(runners[key].run(n) / n)
      log(f"{name} round {r + 1}/{rounds}: " + ", ".join(f"{k} {1e3 * v[-1]:.2f} ms" for k, v in times.items()))
    row: dict[str, Any] = {"workload": name, "definition": peer.definition, "batch": peer.batch, "steps_per_round": n}
    for key, runner in runners.items():
      ms = 1e3 * statistics.median(times[key])
      row[key] = {"step_ms": round(ms, 3), "examples_per_sec": round(peer.batch / ms * 1e3, 1),
                  "compile_s": None if compile_s.get(key) is None else round(compile_s[key], 3),
                  "params": runner.num_params, "step_ms_rounds": [round(1e3 * t, 3) for t in times[key]]}
    if torch:
      row["pytorch_over_model_lib"] = round(row["pytorch"]["step_ms"] / row["model_lib"]["step_ms"], 3)
    if minimal:
      row["flax_minimal_over_model_lib"] = round(row["flax_minimal"]["step_ms"] / row["model_lib"]["step_ms"], 3)
    rows.append(row)
  return rows


def _cpu_threads() -> int:
  return len(os.sched_getaffinity(0))


def table(rows: list[dict[str, Any]]) -> str:
  """A Markdown table of `run_peers` rows."""
  out = ["| workload (batch) | model_lib ms | flax minimal ms | PyTorch ms | model_lib ex/s | PyTorch ex/s | "
         "speed-up vs flax minimal | speed-up vs PyTorch | compile s (model_lib) | params (model_lib / PyTorch) |",
         "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    ml, fm, pt = r["model_lib"], r.get("flax_minimal", {}), r.get("pytorch", {})
    out.append(f"| {r['workload']} ({r['batch']}) | {ml['step_ms']:.2f} | {fm.get('step_ms', float('nan')):.2f} | "
               f"{pt.get('step_ms', float('nan')):.2f} | {ml['examples_per_sec']:.0f} | "
               f"{pt.get('examples_per_sec', float('nan')):.0f} | "
               f"{r.get('flax_minimal_over_model_lib', float('nan')):.2f}× | {r.get('pytorch_over_model_lib', float('nan')):.2f}× | "
               f"{ml['compile_s']:.2f} | {ml['params']:,} / {pt.get('params', 0):,} |")
  return "\n".join(out)


def environment() -> dict[str, Any]:
  """What the numbers were measured on."""
  info = {"jax": jax.__version__, "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
          "cpu_threads": _cpu_threads()}
  try:
    import torch
    info["torch"] = torch.__version__
  except ImportError:
    pass
  return info
