"""Char-level LSTM language model on tiny-Shakespeare (Embedding 64 -> LSTM 256 -> Dense 66).

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/shakespeare_char_lstm.py
Same data, split and reporting as shakespeare_char_gpt; writes DIR/samples.txt.
"""

from experiments.configs import shakespeare_char_gpt


def get_config():
  c = shakespeare_char_gpt.get_config()
  c.model = c.model.__class__({"name": "lstm_lm", "embed_dim": 64, "hidden_size": 256, "num_layers": 1,
                               "dropout": 0.0})
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 0.0
  c.data.batch_size = 32
  return c
