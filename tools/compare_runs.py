"""Compare runs as a markdown table: `python -m tools.compare_runs DIR [DIR ...]`."""

from __future__ import annotations

from absl import app

from model_lib.cli import parse_flags, run_cli
from model_lib.runs import compare_runs


def main(argv):
  workdirs = argv[1:]
  if not workdirs:
    raise app.UsageError("Pass one or more run directories: python -m tools.compare_runs DIR [DIR ...]")
  print(run_cli(lambda: compare_runs(workdirs)))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
