"""k-fold cross-validation of a config: `python -m experiments.crossval --config=... --folds=5 [--workdir=DIR]`.

Writes DIR/fold_<i>/ (a normal run each) and DIR/crossval.json with mean ± std of every held-out metric.
"""

import os

from absl import app, flags

from model_lib.cli import (config_from_flag, config_name, default_workdir, define_config_flag, parse_flags,
                           run_cli)
from model_lib.crossval import cross_validate

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "digits_mlp.py")
_CONFIG = define_config_flag(DEFAULT_CONFIG)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: runs/crossval-<config>-<timestamp>).")
_FOLDS = flags.DEFINE_integer("folds", 5, "Number of folds (>= 2).")


def main(argv):
  del argv
  config = config_from_flag(_CONFIG)
  workdir = default_workdir(_WORKDIR.value, f"crossval-{config_name()}")
  report = run_cli(lambda: cross_validate(config, workdir, _FOLDS.value))
  for k, v in report["metrics"].items():
    print(f"{k:>20s}: {v['mean']:.4f} ± {v['std']:.4f}")
  print(f"({report['folds']} folds; {workdir}/crossval.json)")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
