"""Plot learning curves of runs: `python -m tools.plot_metrics DIR [DIR ...] --out curves.png`."""

from __future__ import annotations

from absl import app, flags

from model_lib.cli import parse_flags, run_cli
from model_lib.plots import plot_learning_curves

_OUT = flags.DEFINE_string("out", "curves.png", "Output PNG path.")
_LOG_SCALE = flags.DEFINE_bool("log_scale", False, "Logarithmic y axes.")
_METRICS = flags.DEFINE_list("metrics", None, "Metrics to plot, e.g. loss,accuracy (default: those logged for "
                             "both train and eval).")


def main(argv):
  workdirs = argv[1:]
  if not workdirs:
    raise app.UsageError("Pass one or more run directories: python -m tools.plot_metrics DIR [DIR ...]")
  metrics = run_cli(lambda: plot_learning_curves(workdirs, _OUT.value, _LOG_SCALE.value, _METRICS.value))
  print(f"Wrote {_OUT.value} ({', '.join(metrics)}; {len(workdirs)} run(s)).")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
