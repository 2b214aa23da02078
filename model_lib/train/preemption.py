"""SIGTERM/SIGINT handling: the loop finishes the current step, checkpoints it and exits cleanly."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


class PreemptionGuard:
  """Context manager that turns SIGTERM/SIGINT into a flag the training loop polls (a Python bool, no sync)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signal_name = ""
    self._previous: dict[int, object] = {}

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt  # A second Ctrl-C aborts immediately.
    self.requested = True
    self.signal_name = signal.Signals(signum).name
    log.warning("%s received: saving a checkpoint at the end of this step, then exiting.", self.signal_name)

  def __enter__(self) -> "PreemptionGuard":
    if threading.current_thread() is threading.main_thread():  # Handlers can only be set from the main thread.
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
