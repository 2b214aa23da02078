"""Conv3x3x32-pool-conv3x3x64-pool-dense128-dense10 on MNIST, Adam with cosine decay.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/mnist_cnn.py
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "cnn"
  c.model.features = (32, 64)
  c.model.kernel_size = 3
  c.model.padding = "VALID"
  c.model.pool_every = 1
  c.model.dense_sizes = (128,)
  c.model.dropout = 0.3
  c.data.name = "mnist"
  c.data.batch_size = 128
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.schedule.name = "cosine"
  c.train.num_epochs = 4
  c.train.log_every = 100
  c.train.early_stopping.metric = "accuracy"
  return c
