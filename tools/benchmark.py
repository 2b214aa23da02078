"""Train-step throughput of a config on synthetic batches, as one JSON object on stdout.

python -m tools.benchmark --config=experiments/configs/NAME.py [--steps=20] [--warmup=2] [--peak_flops=F]
                          [--config.mesh.fsdp=8 ...]
Keys: examples_per_sec, tokens_per_sec (token inputs), step_time_ms (median over timed windows after warm-up),
compile_s, model_flops_per_step (formula in flops_formula), mfu against peak_flops_per_sec (peak_source). No
dataset files are needed; runs unchanged on CPU, GPU and TPU.
"""

from __future__ import annotations

import json

from absl import app, flags

from model_lib.cli import config_from_flag, define_config_flag, parse_flags, run_cli
from model_lib.parallel.benchmark import benchmark

_CONFIG = define_config_flag(None)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed train steps (after the warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timed windows; step_time_ms is the median of their step times.")
_PEAK = flags.DEFINE_float("peak_flops", 0.0, "Peak FLOP/s of all devices together for MFU (0 = from the table "
                           "or, on CPU, from /proc/cpuinfo).")


def main(argv):
  del argv
  config = config_from_flag(_CONFIG)
  result = run_cli(lambda: benchmark(config, steps=_STEPS.value, warmup=_WARMUP.value, windows=_WINDOWS.value,
                                     peak_flops=_PEAK.value, name=flags.FLAGS["config"].config_filename))
  print(json.dumps(result))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=parse_flags)
