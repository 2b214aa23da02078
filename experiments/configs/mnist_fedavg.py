"""FedAvg on MNIST: 20 simulated clients, IID vs label-skew (2 classes per client), MLP 784-200-10.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.fedavg --config=experiments/configs/mnist_fedavg.py
Writes DIR/fedavg.json (test accuracy per round for each partition) and DIR/fedavg.png.
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "mlp"
  c.model.hidden_sizes = (200,)
  c.data.name = "mnist"
  c.data.val_size = 0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.federated.num_clients = 20
  c.federated.rounds = 60
  c.federated.local_steps = 10
  c.federated.client_batch_size = 32
  c.federated.partitions = ("iid", "label_skew")
  c.federated.classes_per_client = 2
  c.federated.eval_every = 5
  c.train.num_steps = 1  # Unused by FedAvg (rounds are set above); required by the shared schema.
  return c
