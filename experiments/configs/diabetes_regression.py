"""Linear(10,20) -> ReLU -> Linear(20,1), MSE, plain SGD lr 0.01 on scikit-learn's diabetes data (standardised).

python -m experiments.train --config=experiments/configs/diabetes_regression.py
Metrics (MSE/MAE/R²) are reported in the original target units.
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.hidden_sizes = (20,)
  c.data.name = "diabetes"
  c.data.batch_size = 16
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.01
  c.train.num_epochs = 60
  c.train.log_every = 50
  c.train.early_stopping.metric = "loss"
  c.train.early_stopping.mode = "min"
  return c
