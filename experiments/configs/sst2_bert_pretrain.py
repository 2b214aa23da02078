"""Masked-LM pretraining of the small BERT encoder on SST sentence text (SST-2 + SST-5 train splits only).

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train \\
    --config=experiments/configs/sst2_bert_pretrain.py --workdir=runs/sst2_bert_pretrain
Then fine-tune with sst2_bert_finetune.py (which reads runs/sst2_bert_pretrain by default).
"""

from model_lib.config import base_config


def get_config():
  c = base_config()
  c.model.name = "bert"
  c.model.num_layers = 2
  c.model.num_heads = 4
  c.model.embed_dim = 128
  c.model.mlp_dim = 256
  c.model.max_len = 64
  c.model.dropout = 0.1
  c.model.post_ln = False
  c.model.head = "mlm"
  c.data.name = "sst_mlm"
  c.data.tokenizer = "word"
  c.data.vocab_size = 10000
  c.data.max_len = 64
  c.data.batch_size = 64
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.01
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 200
  c.train.num_steps = 4000
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.early_stopping.metric = "loss"
  c.train.early_stopping.mode = "min"
  return c
