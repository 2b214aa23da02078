"""Char-level GPT on tiny-Shakespeare in the spirit of nanoGPT's CPU config (4 layers, 4 heads, width 128, context 64).

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/shakespeare_char_gpt.py
90/10 train/val split; writes DIR/samples.txt at the end.
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "gpt"
  c.model.num_layers = 4
  c.model.num_heads = 4
  c.model.embed_dim = 128
  c.model.mlp_dim = 512
  c.model.max_len = 64
  c.model.dropout = 0.0
  c.model.tie_embeddings = True
  c.model.scan_layers = False  # True: one compiled block under nn.scan (params stacked on a 'layers' axis).
  c.model.remat = "none"  # none | full | dots | dots_no_batch: activations kept for the backward pass.
  c.data.name = "tiny_shakespeare"
  c.data.tokenizer = "char"
  c.data.lowercase = False
  c.data.seq_len = 64
  c.data.batch_size = 12
  c.data.eval_batch_size = 256
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.1
  c.optimizer.b2 = 0.99
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 100
  c.optimizer.schedule.end_factor = 0.1
  c.train.num_steps = 2000
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.early_stopping.metric = "loss"
  c.train.early_stopping.mode = "min"
  c.train.sample_tokens = 500
  return c
