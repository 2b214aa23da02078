"""int8 weights: `python -m experiments.quantize --workdirs=RUN[,QAT_RUN,...]` prints float vs int8-PTQ accuracy.

A QAT run is a normal training run with --config.quant.qat=true; its int8 accuracy is the QAT number.
Writes quantization.json into each workdir.
"""

import json
import os

from absl import app, flags

from model_lib.cli import parse_flags, run_cli
from model_lib.compress.experiments import quantization_report

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Trained runs to quantize.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["val", "test"], "Split.")


def main(argv):
  del argv
  print("| run | QAT | float acc | int8 acc | float bytes | int8 bytes |\n|---|---|---|---|---|---|")
  for workdir in _WORKDIRS.value:
    r = run_cli(lambda w=workdir: quantization_report(w, _SPLIT.value))
    with open(os.path.join(workdir, "quantization.json"), "w") as f:
      json.dump(r, f, indent=2)
    print(f"| {workdir} | {r['qat']} | {r['float_accuracy']:.4f} | {r['int8_accuracy']:.4f} | {r['float_bytes']} | "
          f"{r['int8_bytes']} |")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
