"""The embedded base model: a real transformers architecture (Qwen2), small enough for a laptop CPU.

Using `Qwen2ForCausalLM` rather than a hand-written GPT means the miniature takes exactly the code
path a real Qwen2.5 checkpoint takes: same forward, same KV cache, same save/load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, PreTrainedTokenizerFast


@dataclass(frozen=True)
class TinyShape:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    mlp: int = 384
    max_positions: int = 256


def tiny_qwen2(tokenizer: PreTrainedTokenizerFast, shape: TinyShape, seed: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.mlp,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,  # halves the embedding parameters; fine at this size
        rope_theta=10_000.0,
        attention_dropout=0.0,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)
