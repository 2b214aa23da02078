"""BERT-style encoder classifier (2 layers, width 128, pre-LN) trained from scratch on SST-2.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/sst2_transformer.py
"""

from experiments.configs import sst2_lstm


def get_config():
  c = sst2_lstm.get_config()
  c.model = c.model.__class__({"name": "bert", "num_layers": 2, "num_heads": 4, "embed_dim": 128, "mlp_dim": 256,
                               "max_len": 64, "dropout": 0.1, "post_ln": False, "head": "classifier"})
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 5e-4
  c.optimizer.weight_decay = 0.01
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 100
  return c
