"""Train a model from a config file: `python -m experiments.train --config=experiments/configs/NAME.py`."""

import logging
import os

from absl import app, flags

from model_lib.cli import config_from_flag, config_name, default_workdir, define_config_flag, parse_flags, run_cli
from model_lib.train.trainer import train_and_evaluate

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "digits_mlp.py")
_CONFIG = define_config_flag(DEFAULT_CONFIG)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: runs/<config>-<timestamp>).")


def main(argv):
  del argv
  name = config_name()
  workdir = default_workdir(_WORKDIR.value, name)
  logging.info("workdir: %s", workdir)
  config = config_from_flag(_CONFIG)
  summary = run_cli(lambda: train_and_evaluate(config, workdir))
  if summary.get("preempted"):
    print(f"[{name}] stopped by {summary['preempted']} at step {summary['step']}; checkpoint saved in {workdir}. "
          f"Rerun the same command to resume.")
    return
  test = ", ".join(f"{k}={v:.4f}" for k, v in summary["test"].items() if isinstance(v, float))
  print(f"[{name}] step {summary['step']}: test {test}  (workdir: {workdir})")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
