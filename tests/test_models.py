"""The embedded tokenizer and model: the real transformers path, reproducible from a seed."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from aha.config import PretrainConfig, TaskConfig
from aha.models.loading import embedded_base_dir, load_model_dir, stop_token_ids
from aha.models.tokenizer import train_tokenizer
from aha.stages.pretrain import build_corpus
from aha.tasks import get_task
from aha.template import build_prompt


def make_tokenizer():
    return train_tokenizer(build_corpus(get_task("division"), 400, 0), 300)


def test_tokenizer_round_trips_and_splits_digits():
    tok = make_tokenizer()
    for text in [build_prompt("645 // 86") + " <think>8*86=688>645 too high, wait,</think> <answer>7</answer>",
                 "naïve 数字 ٣ emoji 🙂 \n\t tabs"]:
        assert tok.decode(tok(text)["input_ids"]) == text
    digits = [tok.decode([i]) for i in tok("1234567890")["input_ids"]]
    assert digits == list("1234567890")


def test_template_text_and_tags_are_single_tokens():
    tok = make_tokenizer()
    ids = tok(build_prompt("645 // 86"))["input_ids"]
    before, after = build_prompt("{q}").split("{q}")
    assert tok.decode(ids[:1]) == before and tok.decode(ids[-1:]) == after  # one token each
    assert len(stop_token_ids(tok)) == 1 and tok.decode(list(stop_token_ids(tok))) == "</answer>"
    rendered = tok.apply_chat_template([{"role": "user", "content": "645 // 86"}], tokenize=False)
    assert rendered == build_prompt("645 // 86")


def test_reloaded_tokenizer_splits_text_as_in_training(tiny_model_dir):
    """Regression: AutoTokenizer on a qwen2 model directory swaps in Qwen2's pre-tokenizer, which
    splits ' // ' differently from the tokenizer the model was trained with."""
    from aha.models.loading import load_tokenizer
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    loaded = load_tokenizer(tiny_model_dir)
    for doc in build_corpus(get_task("division"), 200, 3):
        assert loaded(doc)["input_ids"] == raw.encode(doc).ids


def test_tokenizer_is_deterministic():
    assert make_tokenizer().get_vocab() == make_tokenizer().get_vocab()


def test_tiny_base_is_an_hf_directory_and_reloads_identically(tiny_model_dir):
    model, tokenizer = load_model_dir(tiny_model_dir)
    again = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM" and tokenizer.padding_side == "left"
    ids = torch.tensor([tokenizer(build_prompt("645 // 86"))["input_ids"]])
    assert torch.equal(model(ids).logits, again(ids).logits)
    assert AutoTokenizer.from_pretrained(tiny_model_dir).eos_token == "<|endoftext|>"


def test_embedded_cache_key_changes_with_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AHA_HOME", str(tmp_path))
    a = embedded_base_dir(PretrainConfig(), TaskConfig())
    assert a.parent == tmp_path / "base"
    assert a != embedded_base_dir(PretrainConfig(seed=1), TaskConfig())
    assert a != embedded_base_dir(PretrainConfig(), TaskConfig(options={"hard_share": 0.5}))
