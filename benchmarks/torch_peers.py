"""The peer workloads in PyTorch eager (float32, CPU): models, AdamW and one train step each.

Each model mirrors its model_lib twin layer for layer, so the parameter counts match (printed by the suite).
Needs the `bench` extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
  """784-512-512-10 ReLU with dropout after each hidden layer."""

  def __init__(self, dropout: float = 0.2):
    super().__init__()
    self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(dropout), nn.Linear(512, 512),
                             nn.ReLU(), nn.Dropout(dropout), nn.Linear(512, 10))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.net(x)


class CNN(nn.Module):
  """conv3x3x32-relu-pool2-conv3x3x64-relu-pool2-dense128-dense10 (VALID), on (B, 28, 28) images."""

  def __init__(self):
    super().__init__()
    self.net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.net(x[:, None])


class LSTMClassifier(nn.Module):
  """Embedding(10000, 128) -> LSTM(128) -> Dense(1) on the last hidden state."""

  def __init__(self, vocab: int = 10000, embed: int = 128, hidden: int = 128):
    super().__init__()
    self.embed = nn.Embedding(vocab, embed)
    self.lstm = nn.LSTM(embed, hidden, batch_first=True)
    self.head = nn.Linear(hidden, 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    _, (h, _) = self.lstm(self.embed(x))
    return self.head(h[-1])[:, 0]


class Block(nn.Module):
  """Pre-LN transformer block with fused QKV and `F.scaled_dot_product_attention`."""

  def __init__(self, d: int, heads: int, mlp: int, causal: bool, eps: float, gelu: str):
    super().__init__()
    self.heads, self.causal, self.gelu = heads, causal, gelu
    self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
    self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
    self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, t, d = x.shape
    q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, N, T, H)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
    x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
    return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate=self.gelu))


class GPT(nn.Module):
  """GPT-2 style decoder with learned positions and tied embeddings."""

  def __init__(self, vocab: int, layers: int, heads: int, d: int, context: int):
    super().__init__()
    self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(context, d)
    self.blocks = nn.ModuleList(Block(d, heads, 4 * d, True, 1e-5, "tanh") for _ in range(layers))
    self.ln = nn.LayerNorm(d, eps=1e-5)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.wte(x) + self.wpe(torch.arange(x.shape[1]))
    for block in self.blocks:
      h = block(h)
    return self.ln(h) @ self.wte.weight.T


class ViT(nn.Module):
  """ViT with a p x p strided-conv patch embedding, [CLS] token and learned positions, on NHWC images."""

  def __init__(self, image: int = 32, patch: int = 4, d: int = 192, layers: int = 6, heads: int = 3, mlp: int = 768,
               classes: int = 10):
    super().__init__()
    self.patch = nn.Conv2d(3, d, patch, stride=patch)
    self.cls = nn.Parameter(torch.zeros(1, 1, d))
    self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, d) * 0.02)
    self.blocks = nn.ModuleList(Block(d, heads, mlp, False, 1e-6, "none") for _ in range(layers))
    self.ln = nn.LayerNorm(d, eps=1e-6)
    self.head = nn.Linear(d, classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h = self.patch(x.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)  # (B, N, D)
    h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
    for block in self.blocks:
      h = block(h)
    return self.head(self.ln(h)[:, 0])


def _classification(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
  return F.cross_entropy(logits, y)


def _binary(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
  return F.binary_cross_entropy_with_logits(logits, y.float())


def _lm(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
  return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # Mean over all tokens.


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[..., torch.Tensor]]] = {
    "mlp": (MLP, _classification),
    "cnn": (CNN, _classification),
    "lstm": (LSTMClassifier, _binary),
    "gpt": (lambda: GPT(65, 4, 4, 128, 64), _lm),
    "gpt_m": (lambda: GPT(65, 6, 6, 384, 256), _lm),
    "vit": (ViT, _classification),
}


class TorchStep:
  """A PyTorch eager train step (forward, backward, AdamW) on two fixed batches; `run(n)` times n steps."""

  def __init__(self, name: str, batches: list[dict[str, np.ndarray]], learning_rate: float, weight_decay: float,
               threads: int, seed: int = 0):
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    build, self.loss_fn = MODELS[name]
    self.model = build()
    self.model.train()
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    self.batches = [(torch.from_numpy(b["x"]), torch.from_numpy(b["y"]).long()) for b in batches]
    self.done = 0
    self.num_params = sum(p.numel() for p in self.model.parameters())
    self.loss = math.nan

  def step(self) -> torch.Tensor:
    x, y = self.batches[self.done % 2]
    self.opt.zero_grad(set_to_none=True)
    loss = self.loss_fn(self.model(x), y)
    loss.backward()
    self.opt.step()
    self.done += 1
    return loss

  def run(self, n: int) -> float:
    """Runs `n` steps; returns the seconds they took (eager: each step has finished when it returns)."""
    t = time.perf_counter()
    for _ in range(n):
      loss = self.step()
    elapsed = time.perf_counter() - t
    self.loss = loss.detach().item()
    return elapsed
