"""Train-step throughput of a config on synthetic batches, as one JSON object on stdout.

python -m tools.benchmark --config=experiments/configs/NAME.py [--steps=20] [--warmup=2] [--peak_flops=F]
                          [--config.mesh.fsdp=8 ...]
python -m tools.benchmark --suite=peers [--workloads=mlp,cnn,lstm,gpt,gpt_m,vit] [--rounds=7] [--steps=5]
                          [--set=model.conv_impl=xla ...]
  model_lib vs a minimal Flax step vs PyTorch eager (needs the `bench` extra), interleaved; prints a Markdown
  table on stderr and the rows as JSON on stdout.
Keys: examples_per_sec, tokens_per_sec (token inputs), step_time_ms (median over timed windows after warm-up),
compile_s, model_flops_per_step (formula in flops_formula), mfu against peak_flops_per_sec (peak_source). No
dataset files are needed; runs unchanged on CPU, GPU and TPU.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from model_lib.cli import config_from_flag, define_config_flag, parse_flags, run_cli
from model_lib.parallel.benchmark import benchmark

_CONFIG = define_config_flag(None)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed train steps (after the warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timed windows; step_time_ms is the median of their step times.")
_SUITE = flags.DEFINE_enum("suite", None, ["peers"], "Run a suite instead of one --config.")
_WORKLOADS = flags.DEFINE_list("workloads", "mlp,cnn,lstm,gpt,gpt_m,vit", "Workloads of --suite=peers.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Interleaved rounds of --suite=peers (median over rounds).")
_SET = flags.DEFINE_multi_string("set", [], "KEY=VALUE config overrides for --suite=peers (Python literals).")
_NO_TORCH = flags.DEFINE_bool("no_torch", False, "--suite=peers without PyTorch.")
_PEAK = flags.DEFINE_float("peak_flops", 0.0, "Peak FLOP/s of all devices together for MFU (0 = from the table "
                           "or, on CPU, from /proc/cpuinfo).")


def _overrides() -> dict:
  import ast
  out = {}
  for item in _SET.value:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--set expects KEY=VALUE, got '{item}'.")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def _peers() -> None:
  from benchmarks import peers
  if not _NO_TORCH.value:
    try:
      import torch  # noqa: F401
    except ImportError:
      raise SystemExit("--suite=peers needs PyTorch: pip install -e \".[bench]\" (or pass --no_torch).") from None
  rows = run_cli(lambda: peers.run_peers(_WORKLOADS.value, rounds=_ROUNDS.value, steps=_STEPS.value,
                                         warmup=_WARMUP.value, torch=not _NO_TORCH.value, overrides=_overrides(),
                                         log=lambda line: print(line, file=sys.stderr, flush=True)))
  print(peers.table(rows), file=sys.stderr)
  print(json.dumps({"environment": peers.environment(), "rows": rows}))


def main(argv):
  del argv
  if _SUITE.value == "peers":
    return _peers()
  if _CONFIG.value is None:
    raise app.UsageError("Pass --config=FILE (or --suite=peers).")
  config = config_from_flag(_CONFIG)
  result = run_cli(lambda: benchmark(config, steps=_STEPS.value, warmup=_WARMUP.value, windows=_WINDOWS.value,
                                     peak_flops=_PEAK.value, name=flags.FLAGS["config"].config_filename))
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
