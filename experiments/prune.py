"""Accuracy vs sparsity: `python -m experiments.prune --config=experiments/configs/mnist_cnn.py --sparsities=0,0.5,0.8,0.9`.

One run per sparsity (gradual global magnitude pruning) in DIR/sparsity_<s>; DIR/pruning.json and
pruning.md hold exact per-layer sparsity and test accuracy; DIR/sparsity_vs_accuracy.png plots them.
"""

import os

from absl import app, flags

from model_lib.cli import config_from_flag, default_workdir, define_config_flag, parse_flags, run_cli
from model_lib.compress.experiments import pruning_table, sparsity_sweep

_CONFIG = define_config_flag(os.path.join(os.path.dirname(__file__), "configs", "mnist_cnn.py"))
_SPARSITIES = flags.DEFINE_list("sparsities", ["0", "0.5", "0.8", "0.9"], "Target sparsities.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: runs/prune-<timestamp>).")


def main(argv):
  del argv
  config = config_from_flag(_CONFIG)
  workdir = default_workdir(_WORKDIR.value, "prune")
  result = run_cli(lambda: sparsity_sweep(config, workdir, [float(s) for s in _SPARSITIES.value]))
  print(pruning_table(result))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
