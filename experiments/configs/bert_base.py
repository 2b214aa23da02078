"""BERT-base: vocabulary 30522, 512 positions, 2 segments, 12 post-LN layers, width 768, 12 heads.

python -m tools.param_count --config=experiments/configs/bert_base.py
prints 109,482,240 parameters with `head="pooler"` (embeddings + LN, 12 blocks, the tanh [CLS] pooler), the count
of Hugging Face `BertModel` for `bert-base-uncased`. `head="mlm"` gives 109,514,298 (`BertForMaskedLM`: no pooler,
a dense+LN transform and a 30522-entry output bias; needs num_outputs=30522). For parameter counts and
benchmarks: there is no Wikipedia/BooksCorpus dataset in this library, so `data.name` only records the intended one.
"""

from ml_collections import config_dict

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "bert"
  c.model.vocab_size = 30522
  c.model.num_outputs = 2  # Unused by head="pooler"; the width of a "classifier" head.
  c.model.max_len = 512
  c.model.num_segments = 2
  c.model.num_layers = 12
  c.model.num_heads = 12
  c.model.embed_dim = 768
  c.model.mlp_dim = 3072
  c.model.dropout = 0.1
  c.model.post_ln = True
  c.model.head = "pooler"
  c.model.dtype = "float32"  # --config.model.dtype=bfloat16 for mixed precision.
  c.model.attention_impl = "dot_product"  # Or "reference" (explicit softmax; sows attention weights).
  c.model.scan_layers = False  # True: one compiled block under nn.scan (params stacked on a 'layers' axis).
  c.model.remat = "none"  # none | full | dots | dots_no_batch: activations kept for the backward pass.
  c.model.implementation = config_dict.placeholder(str)  # jax.nn.dot_product_attention backend: xla | cudnn.
  c.data.name = "wikipedia"
  c.data.max_len = 512
  c.data.vocab_size = 30522
  c.data.tokenizer = "subword"
  c.data.batch_size = 256
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-4
  c.optimizer.weight_decay = 0.01
  c.optimizer.schedule.name = "linear"
  c.optimizer.schedule.warmup_steps = 10_000
  c.train.num_steps = 1_000_000
  c.train.log_every = 100
  return c
