"""Tokenizers (char, word, subword), JSON persistence, padding and length buckets."""

from __future__ import annotations

import json

import ml_collections
import numpy as np
import pytest

from model_lib.data import text

CORPUS = ["the cat sat on the mat", "The dog sat on the log", "a cat and a dog", "the end"]


def test_char_tokenizer_reserves_pad_and_round_trips():
  tok = text.CharTokenizer.build("hello world\n")
  assert tok.vocab_size == len(set("hello world\n")) + 1
  ids = tok.encode("hello world\n")
  assert ids.dtype == np.int32 and ids.min() >= 1 and ids.max() < tok.vocab_size
  assert tok.decode(ids) == "hello world\n"
  assert tok.decode(np.concatenate([ids, np.zeros(3, np.int32)])) == "hello world\n"  # PAD is skipped.
  with pytest.raises(ValueError, match="not in the CharTokenizer"):
    tok.encode("xyz")


def test_char_tokenizer_lowercase():
  tok = text.CharTokenizer.build("AbC", lowercase=True)
  assert tok.chars == ["a", "b", "c"]
  assert tok.decode(tok.encode("CAB")) == "cab"


def test_word_vocab_oov_pad_and_round_trip():
  vocab = text.WordVocab.build(CORPUS, max_size=6, lowercase=True)
  assert vocab.vocab_size == 6  # PAD, OOV and the 4 most frequent words.
  assert vocab.words == ["the", "a", "cat", "dog"]  # 'the' x5, then count-2 words by spelling (sat, on dropped).
  ids = vocab.encode("The cat ate the zebra")
  assert ids.tolist() == [2, 4, text.WordVocab.OOV, 2, text.WordVocab.OOV]
  assert (vocab.encode(" ".join(CORPUS)) != text.PAD).all()  # No word ever gets the PAD id.
  assert vocab.decode(vocab.encode("the cat a dog")) == "the cat a dog"
  assert vocab.decode([2, 1, 0, 0]) == "the <unk>"


def test_word_vocab_case_sensitive_and_min_count():
  vocab = text.WordVocab.build(CORPUS, max_size=100, lowercase=False, min_count=2)
  assert "The" not in vocab.words and "the" in vocab.words
  assert vocab.encode("The")[0] == text.WordVocab.OOV


def test_subword_tokenizer_pad_zero_and_lossless():
  corpus = ["First Citizen:\nBefore we proceed any further, hear me speak.\n"] * 20 + ["All:\nSpeak, speak.\n"] * 20
  tok = text.SubwordTokenizer.build(corpus, vocab_size=300)
  assert tok.tokenizer.token_to_id("<pad>") == 0 and tok.vocab_size <= 300
  sample = "Before we proceed, speak!\nÜnïcode too."
  ids = tok.encode(sample)
  assert ids.dtype == np.int32 and (ids != text.PAD).all()
  assert tok.decode(ids) == sample
  assert len(tok.encode(corpus[0])) < len(corpus[0]) / 2  # Merges were learned.


@pytest.mark.parametrize("kind,opts", [("char", {}), ("word", {"max_size": 8}), ("subword", {"vocab_size": 280})])
def test_save_load_round_trip(tmp_path, kind, opts):
  tok = text.build_tokenizer(kind, CORPUS, **opts)
  path = str(tmp_path / "tokenizer.json")
  tok.save(path)
  with open(path) as f:
    assert json.load(f)["type"] == kind
  loaded = text.load_tokenizer(path)
  assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
  for sentence in CORPUS:
    np.testing.assert_array_equal(loaded.encode(sentence), tok.encode(sentence))
    assert loaded.decode(tok.encode(sentence)) == tok.decode(tok.encode(sentence))
  assert type(type(tok).load(path)) is type(tok)


def test_load_rejects_other_types(tmp_path):
  path = str(tmp_path / "t.json")
  text.CharTokenizer.build("abc").save(path)
  with pytest.raises(ValueError, match="'char' tokenizer"):
    text.WordVocab.load(path)
  with open(path, "w") as f:
    json.dump({"type": "bpe?"}, f)
  with pytest.raises(ValueError, match="tokenizer type 'bpe\\?'"):
    text.load_tokenizer(path)


def test_build_tokenizer_unknown_kind():
  with pytest.raises(ValueError, match="data.tokenizer"):
    text.build_tokenizer("sentencepiece", CORPUS)


def test_tokenizer_from_config_uses_vocab_size_and_lowercase():
  cfg = ml_collections.ConfigDict({"tokenizer": "word", "vocab_size": 4, "lowercase": False})
  tok = text.tokenizer_from_config(cfg, CORPUS)
  assert isinstance(tok, text.WordVocab) and tok.vocab_size == 4 and not tok.lowercase


def test_pad_to_length_pads_right_and_truncates():
  ids, lengths = text.pad_to_length([[5, 6, 7], [], [1, 2, 3, 4, 5, 6]], 4)
  assert ids.dtype == np.int32 and lengths.dtype == np.int32
  np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
  np.testing.assert_array_equal(lengths, [3, 0, 4])


def test_bucket_by_length_groups_and_masks():
  seqs = [[1] * n for n in (1, 3, 4, 5, 8, 12)]
  buckets = text.bucket_by_length(seqs, [8, 4])
  assert sorted(buckets) == [4, 8]
  np.testing.assert_array_equal(buckets[4]["index"], [0, 1, 2])
  np.testing.assert_array_equal(buckets[8]["index"], [3, 4, 5])
  b = buckets[8]
  assert b["ids"].shape == (3, 8) and b["mask"].dtype == np.float32
  np.testing.assert_array_equal(b["lengths"], [5, 8, 8])  # The 12-token sequence is truncated to the last bound.
  np.testing.assert_array_equal(b["mask"].sum(1), b["lengths"])
  np.testing.assert_array_equal(b["ids"] != 0, b["mask"] > 0)
