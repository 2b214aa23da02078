"""The classic Keras MNIST MLP: Flatten -> Dense 128 relu -> Dropout 0.2 -> Dense 10, Adam, sparse CE.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/mnist_mlp.py
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.hidden_sizes = (128,)
  c.model.dropout = 0.2
  c.model.batch_norm = False
  c.data.name = "mnist"
  c.data.batch_size = 32
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.train.num_epochs = 5
  c.train.log_every = 200
  c.train.early_stopping.metric = "accuracy"
  return c
