"""`mnist_mlp` with BatchNorm after the hidden Dense layer.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/mnist_mlp_bn.py
"""

from experiments.configs import mnist_mlp


def get_config():
  c = mnist_mlp.get_config()
  c.model.batch_norm = True
  return c
