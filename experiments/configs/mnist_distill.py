"""Distil mnist_cnn (teacher) into a small MLP (784-32-10): alpha * CE + (1 - alpha) * T^2 * KL, T = 4.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/mnist_distill.py \\
    --config.distill.teacher_workdir=runs/mnist_cnn --workdir=runs/mnist_distill
The baseline without distillation is the same command with --config.distill.teacher_workdir=''.
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.hidden_sizes = (32,)
  c.data.name = "mnist"
  c.data.batch_size = 64
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.schedule.name = "cosine"
  c.train.num_epochs = 3
  c.train.log_every = 200
  c.train.early_stopping.metric = "accuracy"
  c.distill.teacher_workdir = "runs/mnist_cnn"
  c.distill.alpha = 0.5
  c.distill.temperature = 4.0
  return c
