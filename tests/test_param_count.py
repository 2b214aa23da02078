"""tools.param_count against parameter formulas of the architectures (GPT-2 small, BERT-base, ViT-B/16)."""

import json
import pathlib
import subprocess
import sys

from experiments.configs import bert_base, digits_mlp, gpt2_small, vit_b16
from tools.param_count import count_params

REPO = pathlib.Path(__file__).resolve().parents[1]


def _block(d, f):
  """Pre- or post-LN transformer block: Q, K, V, O projections with biases, two LayerNorms, a biased MLP."""
  return 4 * (d * d + d) + 2 * (2 * d) + (d * f + f) + (f * d + d)


def _check(result, expected_total, m):
  assert result["params"] == expected_total
  assert sum(result["by_module"].values()) == result["params"]
  for i in range(m.num_layers):
    assert result["by_module"][f"block_{i}"] == _block(m.embed_dim, m.mlp_dim)


def test_gpt2_small():
  c = gpt2_small.get_config()
  m = c.model
  assert (m.vocab_size, m.max_len, m.num_layers, m.embed_dim, m.mlp_dim) == (50257, 1024, 12, 768, 4 * 768)
  assert m.tie_embeddings  # The LM head is the token table: no parameters of its own.
  v, t, d = m.vocab_size, m.max_len, m.embed_dim
  expected = v * d + t * d + m.num_layers * _block(d, m.mlp_dim) + 2 * d  # wte, wpe, blocks, final LN.
  _check(count_params(c), expected, m)


def test_bert_base():
  c = bert_base.get_config()
  m = c.model
  assert (m.vocab_size, m.max_len, m.num_segments, m.num_layers, m.embed_dim) == (30522, 512, 2, 12, 768)
  assert m.head == "pooler"  # BertModel: encoder + tanh pooler, no task head.
  v, t, s, d = m.vocab_size, m.max_len, m.num_segments, m.embed_dim
  embeddings = v * d + t * d + s * d + 2 * d  # Token, position, segment tables and the embedding LN.
  expected = embeddings + m.num_layers * _block(d, m.mlp_dim) + (d * d + d)
  _check(count_params(c), expected, m)
  # BertForMaskedLM: no pooler; a dense + LN transform and an output bias (the decoder is the tied token table).
  c.model.head, c.model.num_outputs = "mlm", v
  _check(count_params(c), embeddings + m.num_layers * _block(d, m.mlp_dim) + (d * d + d) + 2 * d + v, m)


def test_vit_b16():
  c = vit_b16.get_config()
  m = c.model
  assert (m.image_size, m.patch_size, m.num_layers, m.embed_dim, m.num_outputs) == (224, 16, 12, 768, 1000)
  p, d, k = m.patch_size, m.embed_dim, m.num_outputs
  tokens = (m.image_size // p) ** 2 + 1  # Patches + [CLS].
  expected = ((p * p * 3 * d + d) + d + tokens * d  # Patch conv, [CLS], positions.
              + m.num_layers * _block(d, m.mlp_dim) + 2 * d + (d * k + k))  # Blocks, final LN, head.
  _check(count_params(c), expected, m)


def test_dataset_fallback_for_models_without_an_input_rule():
  c = digits_mlp.get_config()
  sizes = [64, *c.model.hidden_sizes, 10]  # 8x8 digits, 10 classes: both read from the dataset.
  assert count_params(c)["params"] == sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def test_cli_prints_json():
  out = subprocess.run([sys.executable, "-m", "tools.param_count", "--config=experiments/configs/gpt2_small.py"],
                       cwd=REPO, capture_output=True, text=True, check=True, timeout=120).stdout
  result = json.loads(out)
  assert result["params"] == count_params(gpt2_small.get_config())["params"]
  assert set(result["by_module"]) >= {"token_embed", "pos_embed", "block_0", "final_norm"}
