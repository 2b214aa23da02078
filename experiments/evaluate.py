"""Evaluate a trained run: `python -m experiments.evaluate --workdir=DIR [--split=test] [--checkpoint=best]`."""

import json

from absl import app, flags

from model_lib.cli import parse_flags, run_cli
from model_lib.train.evaluation_run import evaluate_run

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to evaluate.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                                "best (falls back to latest if the run kept no best checkpoint) or latest.")


def main(argv):
  del argv
  result = run_cli(lambda: evaluate_run(_WORKDIR.value, _SPLIT.value, _CHECKPOINT.value))
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
