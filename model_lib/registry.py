"""A name -> factory registry, so configs can name models, datasets and tasks by string."""

from __future__ import annotations

import difflib
from typing import Any, Callable


class Registry:
  """Maps names to callables; unknown names raise a one-line error listing the choices."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, Callable[..., Any]] = {}

  def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `@REGISTRY.register('mlp')`."""
    def wrap(fn):
      if name in self._entries:
        raise ValueError(f"{self.kind} '{name}' is registered twice")
      self._entries[name] = fn
      return fn
    return wrap

  def get(self, name: str, key: str = "") -> Callable[..., Any]:
    """Returns the entry for `name` or raises a ValueError naming the config key and the choices."""
    if name not in self._entries:
      close = difflib.get_close_matches(name, self._entries, n=1)
      hint = f" Did you mean '{close[0]}'?" if close else ""
      where = f" (config key {key})" if key else ""
      raise ValueError(f"Unknown {self.kind} '{name}'{where}; choose one of {sorted(self._entries)}.{hint}")
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
