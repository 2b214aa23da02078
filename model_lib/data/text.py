"""Tokenizers (char, word, subword) saved as JSON, plus padding and length-bucketing of id sequences.

Every tokenizer reserves id 0 for PAD, has `vocab_size`, `encode(text) -> (L,) int32`, `decode(ids) -> str`
(PAD skipped), `to_dict()` / `save(path)` and a `load(path)` classmethod; `load_tokenizer` dispatches on the
JSON's "type" field, so a checkpoint directory only needs the file to decode samples.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Iterable, Sequence

import ml_collections
import numpy as np

PAD = 0


def _as_texts(corpus: str | Iterable[str]) -> list[str]:
  return [corpus] if isinstance(corpus, str) else list(corpus)


class _JsonTokenizer:
  """Shared JSON persistence: subclasses implement `to_dict` and `from_dict`."""

  type: str = ""

  def to_dict(self) -> dict[str, Any]:
    raise NotImplementedError

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Any:
    raise NotImplementedError

  def save(self, path: str) -> None:
    """Writes the tokenizer as JSON (with its "type") to `path`."""
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"type": self.type, **self.to_dict()}, f, ensure_ascii=False)

  @classmethod
  def load(cls, path: str) -> Any:
    """Reads a tokenizer written by `save`."""
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
    if d.get("type") != cls.type:
      raise ValueError(f"{path} holds a '{d.get('type')}' tokenizer, not '{cls.type}'; use load_tokenizer(path).")
    return cls.from_dict(d)

  def encode_batch(self, texts: Iterable[str]) -> list[np.ndarray]:
    return [self.encode(t) for t in texts]


class CharTokenizer(_JsonTokenizer):
  """One id per character: PAD = 0, the corpus's characters get 1.. in sorted order."""

  type = "char"

  def __init__(self, chars: Sequence[str], lowercase: bool = False):
    self.chars = list(chars)
    self.lowercase = lowercase
    if not self.chars or len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
      raise ValueError("CharTokenizer needs a non-empty list of distinct single characters.")
    # Sorted code points + searchsorted turn encoding a megabyte of text into one vectorised lookup.
    codes = np.array([ord(c) for c in self.chars], np.int64)
    self._order = np.argsort(codes)
    self._codes = codes[self._order]

  @classmethod
  def build(cls, corpus: str | Iterable[str], lowercase: bool = False) -> CharTokenizer:
    """The sorted set of characters in `corpus` (a string or strings)."""
    chars = set()
    for text in _as_texts(corpus):
      chars.update(text.lower() if lowercase else text)
    return cls(sorted(chars), lowercase)

  @property
  def vocab_size(self) -> int:
    return len(self.chars) + 1

  def encode(self, text: str) -> np.ndarray:
    """(len(text),) int32 ids; raises ValueError on a character outside the vocabulary."""
    if self.lowercase:
      text = text.lower()
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
    pos = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
    unknown = self._codes[pos] != codes if len(codes) else np.zeros(0, bool)
    if unknown.any():
      bad = sorted({chr(c) for c in codes[unknown]})
      raise ValueError(f"Characters {bad[:10]} are not in the CharTokenizer's vocabulary of {len(self.chars)}.")
    return (self._order[pos] + 1).astype(np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    return "".join(self.chars[i - 1] for i in np.asarray(ids, np.int64).reshape(-1) if i != PAD)

  def to_dict(self) -> dict[str, Any]:
    return {"chars": self.chars, "lowercase": self.lowercase}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
    return cls(d["chars"], d.get("lowercase", False))


class WordVocab(_JsonTokenizer):
  """Whitespace-split words: PAD = 0, OOV = 1, then the most frequent words (ties by spelling)."""

  type = "word"
  OOV = 1
  OOV_TOKEN = "<unk>"

  def __init__(self, words: Sequence[str], lowercase: bool = True):
    self.words = list(words)  # Ids 2, 3, ...
    self.lowercase = lowercase
    self._index = {w: i + 2 for i, w in enumerate(self.words)}
    if len(self._index) != len(self.words):
      raise ValueError("WordVocab words must be distinct.")

  @classmethod
  def build(cls, corpus: str | Iterable[str], max_size: int = 10000, lowercase: bool = True,
            min_count: int = 1) -> WordVocab:
    """Keeps the `max_size - 2` most frequent words seen at least `min_count` times (size incl. PAD and OOV)."""
    if max_size < 3:
      raise ValueError(f"WordVocab max_size must be >= 3 (PAD, OOV and one word), got {max_size}.")
    counts = collections.Counter()
    for text in _as_texts(corpus):
      counts.update((text.lower() if lowercase else text).split())
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return cls(ranked[:max_size - 2], lowercase)

  @property
  def vocab_size(self) -> int:
    return len(self.words) + 2

  def tokenize(self, text: str) -> list[str]:
    return (text.lower() if self.lowercase else text).split()

  def encode(self, text: str) -> np.ndarray:
    return np.array([self._index.get(w, self.OOV) for w in self.tokenize(text)], np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    out = []
    for i in np.asarray(ids, np.int64).reshape(-1):
      if i != PAD:
        out.append(self.words[i - 2] if i >= 2 else self.OOV_TOKEN)
    return " ".join(out)

  def to_dict(self) -> dict[str, Any]:
    return {"words": self.words, "lowercase": self.lowercase}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> WordVocab:
    return cls(d["words"], d.get("lowercase", True))


class SubwordTokenizer(_JsonTokenizer):
  """Byte-level BPE trained locally with HuggingFace `tokenizers`: lossless on any text, PAD = 0, UNK = 1."""

  type = "subword"
  SPECIALS = ("<pad>", "<unk>")

  def __init__(self, tokenizer: Any):
    self.tokenizer = tokenizer
    if tokenizer.token_to_id(self.SPECIALS[0]) != PAD:
      raise ValueError("SubwordTokenizer needs '<pad>' at id 0.")

  @classmethod
  def build(cls, corpus: str | Iterable[str], vocab_size: int = 1000, lowercase: bool = False,
            min_frequency: int = 2) -> SubwordTokenizer:
    """Trains a byte-level BPE of at most `vocab_size` ids (incl. PAD and UNK) on `corpus`."""
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.BPE(unk_token=cls.SPECIALS[1]))
    if lowercase:
      tok.normalizer = tk.normalizers.Lowercase()
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(cls.SPECIALS),
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # Line by line (newlines kept) so training memory stays small and merges never cross lines.
    lines = (line for text in _as_texts(corpus) for line in text.splitlines(keepends=True))
    tok.train_from_iterator(lines, trainer=trainer)
    return cls(tok)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size()

  def encode(self, text: str) -> np.ndarray:
    return np.array(self.tokenizer.encode(text).ids, np.int32)

  def encode_batch(self, texts: Iterable[str]) -> list[np.ndarray]:
    return [np.array(e.ids, np.int32) for e in self.tokenizer.encode_batch(list(texts))]

  def decode(self, ids: Iterable[int]) -> str:
    return self.tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)], skip_special_tokens=True)

  def to_dict(self) -> dict[str, Any]:
    return {"tokenizer": json.loads(self.tokenizer.to_str())}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> SubwordTokenizer:
    return cls(_tokenizers().Tokenizer.from_str(json.dumps(d["tokenizer"])))


def _tokenizers() -> Any:
  # Imported on use: only subword vocabularies need the package.
  try:
    import tokenizers
  except ImportError as e:
    raise ImportError("data.tokenizer='subword' needs the `tokenizers` package: pip install tokenizers") from e
  return tokenizers


TOKENIZERS = {cls.type: cls for cls in (CharTokenizer, WordVocab, SubwordTokenizer)}
Tokenizer = CharTokenizer | WordVocab | SubwordTokenizer


def build_tokenizer(kind: str, corpus: str | Iterable[str], **opts: Any) -> Tokenizer:
  """Builds a 'char' | 'word' | 'subword' tokenizer on `corpus` with that class's `build` options."""
  if kind not in TOKENIZERS:
    raise ValueError(f"Unknown tokenizer '{kind}' (config key data.tokenizer); choose one of {sorted(TOKENIZERS)}.")
  return TOKENIZERS[kind].build(corpus, **opts)


def tokenizer_from_config(data_cfg: ml_collections.ConfigDict, corpus: str | Iterable[str]) -> Tokenizer:
  """`build_tokenizer` with data.tokenizer, data.lowercase and (word, subword) data.vocab_size, or the tokenizer
  saved at data.tokenizer_path (e.g. the pretraining run's, so token ids match when fine-tuning)."""
  if data_cfg.get("tokenizer_path", ""):
    return load_tokenizer(data_cfg.tokenizer_path)
  kind, lowercase = data_cfg.get("tokenizer", "word"), data_cfg.get("lowercase", True)
  size = data_cfg.get("vocab_size", 10000)
  opts = {"char": {}, "word": {"max_size": size}, "subword": {"vocab_size": size}}.get(kind, {})
  return build_tokenizer(kind, corpus, lowercase=lowercase, **opts)


def load_tokenizer(path: str) -> Tokenizer:
  """Reads any tokenizer written by `save`, choosing the class by the JSON's "type"."""
  with open(path, encoding="utf-8") as f:
    d = json.load(f)
  if d.get("type") not in TOKENIZERS:
    raise ValueError(f"{path} has tokenizer type '{d.get('type')}'; expected one of {sorted(TOKENIZERS)}.")
  return TOKENIZERS[d["type"]].from_dict(d)


def pad_to_length(seqs: Sequence[Sequence[int]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads with PAD / truncates to `max_len`: ids (N, max_len) int32 and kept lengths (N,) int32."""
  ids = np.full((len(seqs), max_len), PAD, np.int32)
  lengths = np.zeros(len(seqs), np.int32)
  for i, seq in enumerate(seqs):
    seq = np.asarray(seq, np.int32)[:max_len]
    ids[i, :len(seq)] = seq
    lengths[i] = len(seq)
  return ids, lengths


def bucket_by_length(seqs: Sequence[Sequence[int]], boundaries: Sequence[int]) -> dict[int, dict[str, np.ndarray]]:
  """{bound: {'ids' (n, bound) int32, 'mask' float32, 'lengths', 'index' into seqs}} for non-empty length buckets."""
  # One shape per bucket compiles once, and short sequences stop paying for the longest; sequences longer
  # than the last bound are truncated to it.
  bounds = sorted(set(int(b) for b in boundaries))
  if not bounds or bounds[0] <= 0:
    raise ValueError(f"bucket_by_length needs positive boundaries, got {list(boundaries)}.")
  lengths = np.array([len(s) for s in seqs], np.int64)
  which = np.minimum(np.searchsorted(bounds, lengths), len(bounds) - 1)
  buckets = {}
  for b, bound in enumerate(bounds):
    index = np.flatnonzero(which == b)
    if len(index):
      ids, kept = pad_to_length([seqs[i] for i in index], bound)
      mask = (np.arange(bound) < kept[:, None]).astype(np.float32)
      buckets[bound] = {"ids": ids, "mask": mask, "lengths": kept, "index": index}
  return buckets


def encode_splits(texts: dict[str, Sequence[str]], labels: dict[str, np.ndarray],
                  data_cfg: ml_collections.ConfigDict) -> tuple[dict[str, dict[str, np.ndarray]], Tokenizer]:
  """Text classification arrays: tokenizer built on 'train' only, each split {'x': (N, max_len) int32, 'y'}."""
  tokenizer = tokenizer_from_config(data_cfg, texts["train"])
  max_len = data_cfg.get("max_len", 64)
  splits = {name: {"x": pad_to_length(tokenizer.encode_batch(t), max_len)[0], "y": np.asarray(labels[name], np.int32)}
            for name, t in texts.items()}
  return splits, tokenizer
