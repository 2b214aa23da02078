"""Train a model from a config file: `python -m experiments.train --config=experiments/configs/NAME.py`."""

import datetime
import logging
import os

from absl import app, flags
from ml_collections import config_flags

from model_lib.cli import run_cli
from model_lib.train.trainer import train_and_evaluate

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "digits_mlp.py")
_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: runs/<config>-<timestamp>).")


def main(argv):
  del argv
  config_path = flags.FLAGS["config"].config_filename
  name = os.path.splitext(os.path.basename(config_path))[0]
  workdir = _WORKDIR.value or os.path.join("runs", f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
  logging.info("workdir: %s", workdir)
  summary = run_cli(lambda: train_and_evaluate(_CONFIG.value, workdir))
  test = ", ".join(f"{k}={v:.4f}" for k, v in summary["test"].items() if isinstance(v, float))
  print(f"[{name}] step {summary['step']}: test {test}  (workdir: {workdir})")


if __name__ == "__main__":
  app.run(main)
