"""Run outputs: `metrics.jsonl` (one JSON object per line), TensorBoard event files, a progress bar."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _plain(v: Any) -> Any:
  if isinstance(v, (np.floating, float)):
    v = float(v)
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/Inf; keep them readable.
  if isinstance(v, (np.integer,)):
    return int(v)
  return v


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """All rows of `<workdir>/metrics.jsonl`."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
  """Writes scalars to metrics.jsonl and TensorBoard; on resume, drops rows after the restored step."""

  def __init__(self, workdir: str, resume_step: int | None = None, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self.workdir = workdir
    self._truncate(resume_step)
    self._file = open(self.path, "a")
    from tensorboardX import SummaryWriter  # Lazy: TensorBoard is optional at import time.
    self._tb = SummaryWriter(workdir, flush_secs=30)

  def _truncate(self, last_step: int | None) -> None:
    """Keeps rows up to `last_step` (none if None): those after it will be logged again; the test row always is."""
    rows = read_metrics(self.workdir)
    keep = [r for r in rows if last_step is not None and r["step"] <= last_step and r["split"] != "test"]
    if len(keep) != len(rows):  # Rewrite atomically so a crash here cannot lose the file.
      tmp = self.path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
      os.replace(tmp, self.path)

  def rewind(self, step: int) -> None:
    """After a rollback to `step`: drop the rows logged after it, as on resume."""
    if not self.enabled:
      return
    self._file.close()
    self._truncate(step)
    self._file = open(self.path, "a")

  def write(self, step: int, split: str, scalars: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), "split": split, **{k: _plain(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    for k, v in scalars.items():
      if isinstance(v, (int, float, np.number)) and math.isfinite(float(v)):
        self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def write_images(self, tag: str, images: np.ndarray, step: int = 0) -> None:
    """A few input images (N, H, W[, C]) to TensorBoard, rescaled to [0, 1] for display."""
    if not self.enabled:
      return
    x = np.nan_to_num(np.asarray(images, np.float32))  # A poisoned input must not break the logging.
    x = x[..., None] if x.ndim == 3 else x
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
    self._tb.add_images(tag, x, step, dataformats="NHWC")

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      self._tb.close()
