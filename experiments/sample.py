"""Sample text from a trained language model (GPT or LSTM).

python -m experiments.sample --workdir=DIR --prompt="ROMEO:" --num_tokens=200 [--temperature=0.8 --top_k=40 --seed=0]
Needs only the workdir: the tokenizer is read from DIR/tokenizer.json and the parameters from the
best (else latest) checkpoint, without the training data.
"""

from absl import app, flags

from model_lib.cli import parse_flags, run_cli
from model_lib.sampling import sample_from_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a language-model training run.", required=True)
_PROMPT = flags.DEFINE_string("prompt", "\n", "Text to continue.")
_NUM_TOKENS = flags.DEFINE_integer("num_tokens", 200, "Tokens to sample.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Softmax temperature (> 0).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).")
_GREEDY = flags.DEFINE_bool("greedy", False, "Argmax decoding instead of sampling.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed (same seed, same text).")


def main(argv):
  del argv
  text = run_cli(lambda: sample_from_workdir(_WORKDIR.value, _PROMPT.value, _NUM_TOKENS.value, seed=_SEED.value,
                                             temperature=_TEMPERATURE.value, top_k=_TOP_K.value, greedy=_GREEDY.value))
  print(text)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
