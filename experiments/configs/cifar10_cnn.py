"""CNN on the CIFAR-10 subset (4,000 train / 1,000 test images): 3 conv blocks with BatchNorm, crop+flip augmentation.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/cifar10_cnn.py
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "cnn"
  c.model.features = (32, 32, 64, 64, 128)
  c.model.kernel_size = 3
  c.model.padding = "SAME"
  c.model.pool_every = 2
  c.model.batch_norm = True
  c.model.dense_sizes = (128,)
  c.model.dropout = 0.3
  c.data.name = "cifar10"
  c.data.batch_size = 64
  c.data.val_fraction = 0.1
  c.data.augment.random_crop = 4
  c.data.augment.flip = True
  c.data.augment.normalize = True
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 100
  c.train.num_epochs = 30
  c.train.log_every = 50
  c.train.early_stopping.metric = "accuracy"
  return c
