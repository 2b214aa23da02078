"""Describe a run's checkpoint without the model: `python -m tools.inspect_checkpoint DIR [--step N]`.

Prints JSON: available steps, the chosen step, parameter count, leaf shapes/dtypes and a SHA-256
digest of the parameters (equal digests = bit-identical weights).
"""

from __future__ import annotations

import json
import logging

from absl import app, flags

from model_lib.checkpoint_inspect import inspect_checkpoint
from model_lib.cli import parse_flags, run_cli

_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_KIND = flags.DEFINE_enum("kind", "checkpoints", ["checkpoints", "best"], "Which checkpoint directory of the run.")


def _inspect(workdir: str) -> dict:
  logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax warns that a read-only manager is read-only.
  return inspect_checkpoint(workdir, _STEP.value, _KIND.value)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("Pass exactly one run directory: python -m tools.inspect_checkpoint DIR [--step N]")
  print(json.dumps(run_cli(lambda: _inspect(argv[1])), indent=2))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
