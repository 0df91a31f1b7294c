"""`aha plan`: parameter, adapter and KV-cache counts against real models built from the same
config; the memory arithmetic against a hand computation; the command on the shipped recipes."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, Qwen2Config
from typer.testing import CliRunner

from aha.cli import app
from aha.plan import Hardware, Shape, memory_per_device

SMALL = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=6,
             num_key_value_heads=2)


def _shape_and_model(config):
    model = AutoModelForCausalLM.from_config(config)
    return Shape.from_config(config.to_dict()), model


@pytest.mark.parametrize("config", [Qwen2Config(**SMALL, tie_word_embeddings=True),
                                    Qwen2Config(**SMALL, tie_word_embeddings=False),
                                    LlamaConfig(**SMALL, tie_word_embeddings=False)], ids=["qwen2-tied", "qwen2", "llama"])
def test_parameter_count_equals_the_built_model(config):
    shape, model = _shape_and_model(config)
    total, active = shape.params()
    assert total == active == sum(p.numel() for p in model.parameters())


def test_moe_with_latent_attention_counts_equal_the_built_model():
    from transformers import DeepseekV3Config

    config = DeepseekV3Config(vocab_size=97, hidden_size=64, intermediate_size=96, moe_intermediate_size=16,
                              num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, n_shared_experts=1,
                              num_experts_per_tok=2, n_group=1, topk_group=1, num_attention_heads=4,
                              num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8,
                              qk_rope_head_dim=4, v_head_dim=8, tie_word_embeddings=False)
    shape, model = _shape_and_model(config)
    total, active = shape.params()
    assert total == sum(p.numel() for p in model.parameters())
    # Active: the routed experts of 2 layers count 2 of their 8 experts.
    expert = 3 * 64 * 16
    assert total - active == 2 * (8 - 2) * expert


def test_kv_cache_bytes_equal_a_real_cache():
    config = Qwen2Config(**SMALL)
    shape, model = _shape_and_model(config)
    cache = DynamicCache()
    with torch.no_grad():
        model.to(torch.bfloat16)(input_ids=torch.arange(11)[None], past_key_values=cache, use_cache=True)
    cached = sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
                 for layer in cache.layers)
    assert cached == 2 * shape.kv_values_per_token() * 11
    # Latent attention caches the compressed kv (+ its rope key), not per-head K and V.
    mla = Shape.from_config({"model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 3,
                             "num_attention_heads": 4, "intermediate_size": 96, "vocab_size": 97,
                             "kv_lora_rank": 16, "qk_rope_head_dim": 4})
    assert mla.kv_values_per_token() == 3 * (16 + 4)


def test_lora_parameter_count_equals_peft():
    peft = pytest.importorskip("peft")
    config = Qwen2Config(**SMALL)
    shape, model = _shape_and_model(config)
    targets = ["q_proj", "v_proj", "down_proj"]
    model = peft.inject_adapter_in_model(peft.LoraConfig(r=4, target_modules=targets), model)
    assert shape.lora_params(4, targets) == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def test_memory_arithmetic_by_hand():
    shape = Shape.from_config(Qwen2Config(**SMALL).to_dict())
    n = shape.params()[0]
    hw = Hardware(gpus=4, zero=0)
    kwargs = dict(trainable=n, reference=True, micro_tokens=100, rollout_seqs=8, seq_len=50, separate_rollout_copy=False)
    replicated = memory_per_device(shape, hw, **kwargs)
    assert replicated["weights (bf16)"] + replicated["gradients (bf16)"] + replicated["optimizer: fp32 master + Adam m, v"] == 16 * n
    assert replicated["activations (one micro-batch)"] == 34 * 48 * 100 * 3 + 10 * 100 * 97
    assert replicated["rollout KV cache (bf16)"] == 2 * (2 * 2 * 8 * 3) * 50 * 8
    sharded = memory_per_device(shape, Hardware(gpus=4, zero=3), **kwargs)
    assert sharded["optimizer: fp32 master + Adam m, v"] == 12 * n / 4 and sharded["reference model (bf16)"] == 2 * n / 4
    expected_peak = 18 * n / 4 + max(sharded["activations (one micro-batch)"], sharded["rollout KV cache (bf16)"])
    assert sharded["peak"] == pytest.approx(expected_peak)


def test_plan_command_on_the_shipped_recipe():
    result = CliRunner().invoke(app, ["plan", "zero-qwen2.5-math-1.5b", "--gpus", "8", "--gpu-memory", "80", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["model"]["parameters"] == 1_543_714_304  # Qwen2.5-1.5B's published count
    assert plan["step"]["samples"] == 32 * 16
    assert plan["run"]["dollars"] > 0 and plan["run"]["gpu_hours"] == pytest.approx(plan["run"]["hours"] * 8)
    table = CliRunner().invoke(app, ["plan", "zero-qwen2.5-math-1.5b", "grpo.steps=10"])
    assert table.exit_code == 0 and "peak per device" in table.output
    bad = CliRunner().invoke(app, ["plan", "zero-qwen2.5-math-1.5b", "grpo.group_size=1"])
    assert bad.exit_code == 2 and "group_size" in bad.output
