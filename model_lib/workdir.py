"""Workdir safety and provenance: one writer per workdir, no silent config changes on resume, run_info.json."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from typing import Any, Sequence

import ml_collections

from model_lib.runs import flatten

log = logging.getLogger(__name__)

LOCK_FILE = "workdir.lock"
RUN_INFO_FILE = "run_info.json"
COMPAT_SECTIONS = ("model", "data")
# Keys that name where the same data lives or how it is evaluated, not what is trained on.
COMPAT_IGNORED = ("data.data_dir", "data.eval_batch_size")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


class WorkdirBusyError(ValueError):
  """Another live process holds the workdir (a ValueError so the CLIs print it in one line)."""


def _process_start(pid: int) -> str | None:
  """Start time of `pid` in clock ticks since boot (Linux), to tell a reused PID from the lock owner."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, owned by another user.
    return True
  return True


class WorkdirLock:
  """Context manager holding `<workdir>/workdir.lock` (PID, host); refuses a live holder, takes over a dead one."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self.enabled = enabled
    self._record = {"pid": os.getpid(), "hostname": socket.gethostname(), "start": _process_start(os.getpid())}
    self._held = False

  def _holder_alive(self, holder: dict[str, Any]) -> bool:
    if not holder:
      return False
    if holder.get("hostname") != self._record["hostname"]:
      return True  # Cannot check a process on another host: assume it is running.
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not _pid_alive(pid):
      return False
    start = _process_start(pid)
    return holder.get("start") is None or start is None or start == holder["start"]

  def _create(self) -> bool:
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      json.dump(self._record, f)
    return True

  def acquire(self) -> None:
    """Creates the lock file, or raises WorkdirBusyError naming the live holder."""
    if not self.enabled or self._held:
      return
    os.makedirs(self.workdir, exist_ok=True)
    for attempt in range(5):  # Retries only while other processes create, fill or remove the file meanwhile.
      if self._create():
        self._held = True
        return
      try:
        with open(self.path) as f:
          holder = json.load(f)
        holder = holder if isinstance(holder, dict) else {}
      except FileNotFoundError:
        continue
      except (OSError, ValueError):
        if attempt < 2:  # Its creator may be between creating and writing it.
          time.sleep(0.2)
          continue
        holder = {}  # Still unreadable: the writer died half-way.
      if self._holder_alive(holder):
        raise WorkdirBusyError(
            f"Workdir {self.workdir} is in use by PID {holder.get('pid')} on {holder.get('hostname')}; wait for it "
            f"to finish, stop it, or use another --workdir (delete {self.path} if that process is gone).")
      log.warning("Taking over the stale lock %s of PID %s on %s (that process is gone).", self.path,
                  holder.get("pid"), holder.get("hostname"))
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass
    raise WorkdirBusyError(f"Could not acquire {self.path}: other processes keep replacing it.")

  def release(self) -> None:
    """Removes the lock file if it is still ours."""
    if not self._held:
      return
    self._held = False
    try:
      with open(self.path) as f:
        if json.load(f).get("pid") != self._record["pid"]:
          return
      os.remove(self.path)
    except (OSError, ValueError):
      pass

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc: Any) -> None:
    self.release()


def _config_dict(config: ml_collections.ConfigDict | dict[str, Any]) -> dict[str, Any]:
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())  # Same normalisation (tuples -> lists) as config.json.
  return json.loads(json.dumps(config, default=repr))


def config_changes(old: dict[str, Any], new: dict[str, Any], sections: Sequence[str] = COMPAT_SECTIONS) -> list[str]:
  """Flattened keys of `sections` whose value or presence differs between two config dicts."""
  old_flat = {k: v for k, v in flatten({s: old.get(s, {}) for s in sections}).items() if k not in COMPAT_IGNORED}
  new_flat = {k: v for k, v in flatten({s: new.get(s, {}) for s in sections}).items() if k not in COMPAT_IGNORED}
  missing = object()
  return sorted(k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k, missing) != new_flat.get(k, missing))


def check_config_compatible(workdir: str, config: ml_collections.ConfigDict, allow_change: bool = False) -> list[str]:
  """Compares model/data keys with `<workdir>/config.json`; raises ValueError on a change unless allowed.

  Returns the changed keys (empty when there is no saved config or nothing changed).
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return []
  from model_lib.config import load_run_config  # Local: config imports the data registry.

  try:
    # Keys added to the schema since that run was written count with their defaults, not as changes.
    saved = _config_dict(load_run_config(workdir))
  except ValueError:  # A config.json cut short by a kill: nothing to compare against.
    log.warning("Ignoring unreadable %s (it will be rewritten).", path)
    return []
  new = _config_dict(config)
  changed = config_changes(saved, new)
  if not changed:
    return []
  old_flat, new_flat = flatten(saved), flatten(new)
  detail = "; ".join(f"{k}: {old_flat.get(k, '<absent>')!r} -> {new_flat.get(k, '<absent>')!r}" for k in changed)
  if not allow_change:
    raise ValueError(f"Workdir {workdir} holds a run with another model/data config ({detail}); use a new --workdir, "
                     f"or pass --config.train.allow_config_change=true to resume it anyway.")
  log.warning("Resuming %s with a changed model/data config (allowed): %s", workdir, detail)
  return changed


def _git(args: Sequence[str], cwd: str) -> str | None:
  try:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def git_state(path: str | None = None) -> dict[str, Any]:
  """Commit and dirty flag of the git checkout holding `path` (default: this package); None values if none."""
  path = path or os.path.dirname(os.path.abspath(__file__))
  commit = _git(["rev-parse", "HEAD"], path)
  if commit is None:
    return {"commit": None, "dirty": None}
  status = _git(["status", "--porcelain"], path)
  return {"commit": commit, "dirty": None if status is None else bool(status)}


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def run_info(config: ml_collections.ConfigDict, argv: Sequence[str]) -> dict[str, Any]:
  """Everything needed to reproduce a run besides the config: code version, packages, hardware, command."""
  import jax  # Local: reading devices initialises the backend.

  devices = jax.devices()
  return {
      "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": list(argv),
      "cwd": os.getcwd(),
      "hostname": socket.gethostname(),
      "git": git_state(),
      "python": platform.python_version(),
      "executable": sys.executable,
      "packages": {p: _version(p) for p in PACKAGES},
      "platform": devices[0].platform,
      "device_kind": devices[0].device_kind,
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "seed": config.get("seed"),
  }


def write_run_info(workdir: str, config: ml_collections.ConfigDict, argv: Sequence[str]) -> dict[str, Any]:
  """Writes `<workdir>/run_info.json`; the records of earlier starts (resumes) move to its 'previous' list."""
  info = run_info(config, argv)
  path = os.path.join(workdir, RUN_INFO_FILE)
  previous: list[dict[str, Any]] = []
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
      previous = old.pop("previous", []) + [old]
    except (OSError, ValueError):
      log.warning("Ignoring unreadable %s.", path)
  record = {**info, "previous": previous}
  os.makedirs(workdir, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=2)
  os.replace(tmp, path)
  return record
