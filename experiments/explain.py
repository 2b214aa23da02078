"""Explain a trained run: `python -m experiments.explain --workdir=DIR --method=integrated_gradients --index=0`.

Image models: saliency | smoothgrad | integrated_gradients | occlusion (heatmap PNG for one example).
Tabular models: permutation (importance over the split) | shap (values for one example), as bar charts.
Writes DIR/explain_<method>_<index>.png and .json.
"""

import json

from absl import app, flags

from model_lib.cli import parse_flags, run_cli
from model_lib.explain.run import IMAGE_METHODS, TABULAR_METHODS, explain_run

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.", required=True)
_METHOD = flags.DEFINE_enum("method", "integrated_gradients", list(IMAGE_METHODS + TABULAR_METHODS), "Method.")
_INDEX = flags.DEFINE_integer("index", 0, "Example index in the split.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for sampling methods.")


def main(argv):
  del argv
  print(json.dumps(run_cli(lambda: explain_run(_WORKDIR.value, _METHOD.value, _INDEX.value, _SPLIT.value,
                                               _SEED.value)), indent=2))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
