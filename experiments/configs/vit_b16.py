"""ViT-B/16 at 224x224 with a 1000-class head (ImageNet-1k shapes); for parameter counts and benchmarks.

python -m tools.param_count --config=experiments/configs/vit_b16.py
prints 86,567,656 parameters (patch embedding, [CLS], positions, 12 blocks, final LN and the 1000-way head), the
count of the reference ViT-B/16 (timm `vit_base_patch16_224`, no pre-logits layer). Not trainable here: there is
no ImageNet dataset in this library, so `data.name` only records the intended one.
"""

from ml_collections import config_dict

from model_lib.config import base_config
from model_lib.models.vit import vit_variant


def get_config():
  c = base_config()
  c.model.name = "vit"
  for k, v in vit_variant("B/16", image_size=224).items():
    c.model[k] = v
  c.model.num_outputs = 1000
  c.model.pool = "cls"
  c.model.dropout = 0.1
  c.model.dtype = "float32"  # --config.model.dtype=bfloat16 for mixed precision.
  c.model.attention_impl = "dot_product"  # Or "reference" (explicit softmax; sows attention weights).
  c.model.scan_layers = False  # True: one compiled block under nn.scan (params stacked on a 'layers' axis).
  c.model.remat = "none"  # none | full | dots | dots_no_batch: activations kept for the backward pass.
  c.model.implementation = config_dict.placeholder(str)  # jax.nn.dot_product_attention backend: xla | cudnn.
  c.data.name = "imagenet2012"
  c.data.batch_size = 1024
  c.data.augment.random_crop = 16
  c.data.augment.flip = True
  c.data.augment.normalize = True
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 10_000
  c.train.num_epochs = 90
  c.train.log_every = 100
  c.train.early_stopping.metric = "accuracy"
  return c
