"""Helpers for the command-line entry points: one-line errors instead of tracebacks for user mistakes."""

from __future__ import annotations

import logging
import sys
from typing import Callable, TypeVar

T = TypeVar("T")

USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


def run_cli(fn: Callable[[], T]) -> T:
  """Runs `fn`; a config/data/path mistake exits with status 2 and one line naming the fix."""
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save/restore at INFO through absl.
  try:
    return fn()
  except USER_ERRORS as e:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
      raise
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)
