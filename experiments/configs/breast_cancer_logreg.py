"""Logistic regression (one linear layer + sigmoid, binary CE, SGD) on scikit-learn's breast-cancer data.

python -m experiments.train --config=experiments/configs/breast_cancer_logreg.py
Reports accuracy, precision, recall, F1 and ROC-AUC.
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.hidden_sizes = ()
  c.data.name = "breast_cancer"
  c.data.batch_size = 32
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.train.num_epochs = 50
  c.train.log_every = 25
  c.train.early_stopping.metric = "loss"
  c.train.early_stopping.mode = "min"
  return c
