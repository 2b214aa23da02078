"""Hyper-parameter sweep: `python -m experiments.sweep --config=... --space=experiments/sweeps/NAME.py --trials=N`.

Every trial is a normal run in DIR/trial_<n>; DIR/sweep.json ranks them, DIR/sweep.md is the table,
DIR/sweep.png plots the best metric against the trial number.
"""

import os

from absl import app, flags

from model_lib.cli import (config_from_flag, config_name, default_workdir, define_config_flag, parse_flags,
                           run_cli)
from model_lib.sweep import SAMPLERS, load_space, results_table, run_sweep

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "digits_mlp.py")
_CONFIG = define_config_flag(DEFAULT_CONFIG)
_SPACE = flags.DEFINE_string("space", "experiments/sweeps/digits_lr_dropout.py", "Search space (.py/.yaml/.json).")
_TRIALS = flags.DEFINE_integer("trials", 8, "Number of trials (grid: at most the number of combinations).")
_METRIC = flags.DEFINE_string("metric", "accuracy", "Eval metric to optimise (best value during each run).")
_MODE = flags.DEFINE_enum("mode", "max", ["min", "max"], "Maximise or minimise the metric.")
_SAMPLER = flags.DEFINE_enum("sampler", "tpe", list(SAMPLERS), "grid, random or tpe (Optuna).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampler seed.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: runs/sweep-<config>-<timestamp>).")


def main(argv):
  del argv
  config = config_from_flag(_CONFIG)
  workdir = default_workdir(_WORKDIR.value, f"sweep-{config_name()}")
  report = run_cli(lambda: run_sweep(config, load_space(_SPACE.value), workdir, _TRIALS.value, _METRIC.value,
                                     _MODE.value, _SAMPLER.value, _SEED.value))
  print(results_table(report))
  print(f"({workdir}/sweep.json, sweep.png)")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
