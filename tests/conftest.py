"""Test setup: point MODEL_LIB_DATA_DIR at the shared data folder next to the repository when it exists."""

from __future__ import annotations

import os

_SHARED_DATA = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
if os.path.isdir(_SHARED_DATA):
  os.environ.setdefault("MODEL_LIB_DATA_DIR", _SHARED_DATA)
