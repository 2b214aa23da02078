"""Fine-tune the MLM-pretrained BERT encoder (sst2_bert_pretrain) on SST-2 with a fresh [CLS]-pooled classifier.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train \\
    --config=experiments/configs/sst2_bert_finetune.py --workdir=runs/sst2_bert_finetune
The encoder is initialised from --config.init_from (default runs/sst2_bert_pretrain) and reuses its
tokenizer, so token ids match. The from-scratch baseline is the same command with --config.init_from=''.
"""

from experiments.configs import sst2_bert_pretrain

PRETRAINED = "runs/sst2_bert_pretrain"


def get_config():
  c = sst2_bert_pretrain.get_config()
  c.model.head = "classifier"
  c.data.name = "sst2"
  c.data.batch_size = 32
  c.init_from = PRETRAINED
  c.data.tokenizer_path = ""  # Empty: the trainer uses <init_from>/tokenizer.json when it exists.
  c.optimizer.learning_rate = 3e-4
  c.optimizer.schedule.warmup_steps = 100
  c.train.num_steps = 0
  c.train.num_epochs = 4
  c.train.eval_every = 0
  c.train.early_stopping.metric = "accuracy"
  c.train.early_stopping.mode = "max"
  return c
