"""Test setup: the real data dir (../shared/data beside the checkout) unless MODEL_LIB_DATA_DIR is set."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "data"
if _SHARED.is_dir():
  os.environ.setdefault("MODEL_LIB_DATA_DIR", str(_SHARED))
DATA_DIR = os.environ.get("MODEL_LIB_DATA_DIR", "")


@pytest.fixture
def data_dir() -> str:
  """The data dir; skipped locally without one, a failure in CI (CI must test the real files)."""
  if not DATA_DIR or not os.path.isdir(DATA_DIR):
    if os.environ.get("CI"):
      pytest.fail("CI must have the data dir: set MODEL_LIB_DATA_DIR or keep ../shared/data beside the checkout")
    pytest.skip("MODEL_LIB_DATA_DIR is not set and ../shared/data is missing")
  return DATA_DIR
