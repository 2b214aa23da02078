"""MLP on scikit-learn's bundled 8x8 digits (the default config; no files needed).

python -m experiments.train --config=experiments/configs/digits_mlp.py
Reaches ~96% test accuracy (95.6% measured) in ~10 s on 2 CPU cores.
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.hidden_sizes = (256, 128)
  c.model.dropout = 0.1
  c.data.name = "digits"
  c.data.batch_size = 32
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule.name = "cosine"
  c.train.num_epochs = 40
  c.train.log_every = 20
  c.train.early_stopping.metric = "accuracy"
  c.train.early_stopping.mode = "max"
  return c
