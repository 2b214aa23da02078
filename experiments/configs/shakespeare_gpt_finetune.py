"""Decoder fine-tuning: the char GPT pretrained on the first half of tiny-Shakespeare, fine-tuned on the second.

MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train --config=experiments/configs/shakespeare_char_gpt.py \\
    --config.data.text_slice='(0.0, 0.5)' --config.train.num_steps=1000 --workdir=runs/gpt_first_half
MODEL_LIB_DATA_DIR=../shared/data python -m experiments.train \\
    --config=experiments/configs/shakespeare_gpt_finetune.py --workdir=runs/gpt_second_half_finetuned
The from-scratch baseline is the second command with --config.init_from=''.
"""

from experiments.configs import shakespeare_char_gpt


def get_config():
  c = shakespeare_char_gpt.get_config()
  c.init_from = "runs/gpt_first_half"
  c.data.text_slice = (0.5, 1.0)
  c.optimizer.learning_rate = 5e-4
  c.optimizer.schedule.warmup_steps = 50
  c.train.num_steps = 500
  c.train.eval_every = 250
  c.train.sample_tokens = 300
  return c
