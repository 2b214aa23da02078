"""A small ViT (patch 4, width 192, depth 6, 3 heads) on the CIFAR-10 subset with crop+flip augmentation.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/cifar10_vit.py
"""

from experiments.configs import cifar10_cnn


def get_config():
  c = cifar10_cnn.get_config()
  c.model = c.model.__class__({"name": "vit", "image_size": 32, "patch_size": 4, "embed_dim": 192, "num_layers": 6,
                               "num_heads": 3, "mlp_dim": 768, "pool": "cls", "dropout": 0.1,
                               "scan_layers": False, "remat": "none"})  # See transformer.stack_blocks.
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.05
  c.train.num_epochs = 30
  return c
