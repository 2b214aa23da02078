"""GPT-2 small: vocabulary 50257, context 1024, 12 layers, width 768, 12 heads, tied embeddings.

python -m tools.param_count --config=experiments/configs/gpt2_small.py
prints 124,439,808 parameters (token + position embeddings, 12 blocks, final LN; the LM head is the tied token
table, so it adds nothing), the count of Hugging Face `gpt2`. For parameter counts and benchmarks: there is no
OpenWebText dataset in this library, so `data.name` only records the intended one (nanoGPT's recipe otherwise).
"""

from ml_collections import config_dict

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "gpt"
  c.model.vocab_size = 50257
  c.model.num_outputs = 50257
  c.model.max_len = 1024
  c.model.num_layers = 12
  c.model.num_heads = 12
  c.model.embed_dim = 768
  c.model.mlp_dim = 3072
  c.model.dropout = 0.1
  c.model.tie_embeddings = True
  c.model.dtype = "float32"  # --config.model.dtype=bfloat16 for mixed precision.
  c.model.attention_impl = "dot_product"  # Or "reference" (explicit softmax; sows attention weights).
  c.model.scan_layers = False  # True: one compiled block under nn.scan (params stacked on a 'layers' axis).
  c.model.remat = "none"  # none | full | dots | dots_no_batch: activations kept for the backward pass.
  c.model.implementation = config_dict.placeholder(str)  # jax.nn.dot_product_attention backend: xla | cudnn.
  c.data.name = "openwebtext"
  c.data.seq_len = 1024
  c.data.vocab_size = 50257
  c.data.tokenizer = "subword"
  c.data.lowercase = False
  c.data.batch_size = 12
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 6e-4
  c.optimizer.b2 = 0.95
  c.optimizer.weight_decay = 0.1
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.accumulate_steps = 40
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 2000
  c.optimizer.schedule.end_factor = 0.1
  c.train.num_steps = 600_000
  c.train.log_every = 100
  c.train.eval_every = 2000
  return c
