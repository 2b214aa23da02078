"""Search space for digits_mlp: learning rate (log-uniform) and dropout."""


def get_space():
  return {
      "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
      "model.dropout": {"type": "categorical", "choices": [0.0, 0.1, 0.3]},
  }
