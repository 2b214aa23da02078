"""Input-pipeline throughput alone: `python -m tools.data_benchmark --config=experiments/configs/NAME.py [--batches=N]`.

Prints one JSON object: batches/s and examples/s of the training iterator (Grain pipeline, including
augmentation and the host->device transfer the loop performs), measured after a warm-up.
"""

import json
import time

import jax
from absl import app, flags

from model_lib.cli import config_from_flag, define_config_flag, parse_flags, run_cli
from model_lib.data import load_dataset
from model_lib.data.pipeline import make_train_iterator

_CONFIG = define_config_flag("experiments/configs/mnist_cnn.py")
_BATCHES = flags.DEFINE_integer("batches", 500, "Batches to time after the warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Batches before timing starts.")


def benchmark(config, batches: int, warmup: int) -> dict:
  """Times `batches` batches of the config's training iterator."""
  dataset = load_dataset(config.data)
  it = make_train_iterator(dataset, config.data, seed=config.seed)
  for _ in range(warmup):
    jax.block_until_ready(jax.device_put(next(it)))
  start = time.perf_counter()
  for _ in range(batches):
    batch = jax.device_put(next(it))
  jax.block_until_ready(batch)
  elapsed = time.perf_counter() - start
  return {"config": flags.FLAGS["config"].config_filename, "dataset": config.data.name,
          "batch_size": config.data.batch_size, "batches": batches, "seconds": elapsed,
          "batches_per_sec": batches / elapsed, "examples_per_sec": batches * config.data.batch_size / elapsed}


def main(argv):
  del argv
  config = config_from_flag(_CONFIG)
  print(json.dumps(run_cli(lambda: benchmark(config, _BATCHES.value, _WARMUP.value)), indent=2))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
