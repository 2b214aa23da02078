"""Federated averaging: `python -m experiments.fedavg --config=experiments/configs/mnist_fedavg.py --workdir=DIR`."""

import os

from absl import app, flags

from model_lib.cli import config_from_flag, default_workdir, define_config_flag, parse_flags, run_cli
from model_lib.federated import run_fedavg

_CONFIG = define_config_flag(os.path.join(os.path.dirname(__file__), "configs", "mnist_fedavg.py"))
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: runs/fedavg-<timestamp>).")


def main(argv):
  del argv
  config = config_from_flag(_CONFIG)
  workdir = default_workdir(_WORKDIR.value, "fedavg")
  report = run_cli(lambda: run_fedavg(config, workdir))
  for scheme, part in report["partitions"].items():
    print(f"{scheme:>11s}: test accuracy {part['final_accuracy']:.4f} after {report['rounds']} rounds "
          f"({part['mean_classes_per_client']:.1f} classes per client)")
  print(f"({workdir}/fedavg.json, fedavg.png)")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
