"""Helpers for the command-line entry points: one-line errors instead of tracebacks for user mistakes."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Callable, TypeVar

T = TypeVar("T")

def _user_errors() -> tuple[type[BaseException], ...]:
  from model_lib.checkpoint import CheckpointError
  from model_lib.train.loop import NonFiniteError

  return (ValueError, FileNotFoundError, KeyError, CheckpointError, NonFiniteError)


def run_cli(fn: Callable[[], T]) -> T:
  """Runs `fn`; a config/data/path mistake exits with status 2 and one line naming the fix."""
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save/restore at INFO through absl.
  try:
    return fn()
  except _user_errors() as e:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
      raise
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)



def _override_error(exc: Exception, argv: list[str]) -> None:
  """Prints the one-line error for an override naming a key the config lacks, then exits 2."""
  text = " ".join(str(exc).replace("\\n", " ").split())
  found = re.search(r"'([A-Za-z0-9_]+)", text)
  bad = found.group(1) if found else text
  overrides = [a.split("=")[0] for a in argv if a.startswith("--config.") and a.split("=")[0].endswith("." + bad)]
  where = overrides[0] if overrides else "a --config.* override"
  hint = (text[text.index("Did you mean"):].rstrip("'\" ") + " ") if "Did you mean" in text else ""
  print(f"error: unknown config key in {where}. {hint}Valid keys are those of the config file "
        f"(shared ones: model_lib/config.py:base_config).", file=sys.stderr)
  sys.exit(2)


def define_config_flag(default: str, name: str = "config"):
  """`config_flags.DEFINE_config_file` (locked) whose override mistakes exit with one line, not a traceback."""
  from ml_collections import config_flags

  try:
    return config_flags.DEFINE_config_file(name, default, "Experiment config file.", lock_config=True)
  except (AttributeError, KeyError) as e:  # ml_collections applies overrides found in sys.argv right here.
    _override_error(e, sys.argv)


def config_from_flag(config_flag, name: str = "config"):
  """The parsed config; a config file that does not exist is a one-line error."""
  from absl import flags

  path = flags.FLAGS[name].config_filename
  if not os.path.exists(path.split(":")[0]):
    print(f"error: config file '{path}' not found; pass --{name}=experiments/configs/NAME.py "
          f"(see experiments/configs/).", file=sys.stderr)
    sys.exit(2)
  return config_flag.value


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing for `app.run(main, flags_parser=parse_flags)` with one-line errors."""
  from absl import flags

  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    _override_error(e, argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def config_name(name: str = "config") -> str:
  """The config file's stem ('mnist_cnn' for --config=experiments/configs/mnist_cnn.py)."""
  from absl import flags

  return os.path.splitext(os.path.basename(flags.FLAGS[name].config_filename.split(":")[0]))[0]


def default_workdir(given: str | None, prefix: str) -> str:
  """`given`, else runs/<prefix>-<timestamp>."""
  import datetime

  return given or os.path.join("runs", f"{prefix}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
