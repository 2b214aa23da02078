"""The classic sentiment LSTM on SST-2: Embedding(10000, 32) -> LSTM(128) -> Dense(1), sigmoid binary CE.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/sst2_lstm.py
Word vocabulary (10,000 most frequent train words, lowercased), sentences padded/truncated to 64 tokens.
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "lstm_classifier"
  c.model.embed_dim = 32
  c.model.hidden_size = 128
  c.model.num_layers = 1
  c.model.bidirectional = False
  c.model.dropout = 0.3
  c.data.name = "sst2"
  c.data.tokenizer = "word"
  c.data.vocab_size = 10000
  c.data.max_len = 64
  c.data.batch_size = 32
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.grad_clip_norm = 1.0
  c.train.num_epochs = 6
  c.train.log_every = 50
  c.train.early_stopping.metric = "accuracy"
  return c
