"""The embedded model's tokenizer: byte-level BPE trained on the synthetic corpus.

Two choices matter for a tiny model:
- digits are always single tokens, so arithmetic is done digit by digit, as in real LLM tokenizers;
- the fixed text of the R1 template before and after the question is one token each, and merges may
  cross spaces: the template is the paper's, verbatim, but a 1 M-parameter model should not spend
  most of its compute re-reading ~80 tokens of it in every sequence.
The R1 tags are special tokens, so `</answer>` is one id the sampler can stop on.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from aha.template import R1_ZERO_TEMPLATE, TAGS

EOS, PAD = "<|endoftext|>", "<|pad|>"

# The chat template renders one user turn in the R1-Zero template; generation continues after "Assistant:".
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    + R1_ZERO_TEMPLATE.replace("{prompt}", "{{ message['content'] }}")
    + "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, compact_template: bool = True) -> PreTrainedTokenizerFast:
    """Deterministic for the same texts (the BPE trainer breaks ties by order). `compact_template=False`
    tokenizes like a real LLM tokenizer instead — merges stop at word boundaries and the template is
    plain text, ≈ 110 prompt tokens — for benchmarks whose cost should look like a real model's."""
    core = Tokenizer(models.BPE())
    # Split off every digit, then map bytes to the 256-symbol byte alphabet without regex splitting,
    # so merges can span words but never digits.
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not compact_template),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, *TAGS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    # The template's fixed text around the question is one token each (not special: it decodes as text).
    # The words stay the paper's; a 1 M-parameter model just reads them as one cue instead of ~40.
    before, after = R1_ZERO_TEMPLATE.split("{prompt}")
    if compact_template:
        core.add_tokens([AddedToken(before, normalized=False), AddedToken(after, normalized=False)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD, padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    return tok
