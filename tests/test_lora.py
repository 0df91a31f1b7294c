"""LoRA (peft): GRPO and SFT train the adapters only, rollouts sample the merged policy, checkpoints
hold merged weights that plain transformers loads plus the adapter, and a LoRA run resumes exactly."""

import json
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

pytest.importorskip("peft")

from aha.cli import app  # noqa: E402
from aha.config import ZeroConfig, load_config  # noqa: E402
from aha.config.sections import LoRAConfig  # noqa: E402
from aha.events import Events  # noqa: E402
from aha.models import lora  # noqa: E402
from aha.models.loading import load_model_dir  # noqa: E402
from aha.stages import grpo  # noqa: E402
from aha.stages.grpo_step import run_step  # noqa: E402

LENGTH_REWARD = "def length_reward(completions, **columns):\n    return [min(len(c), 40) / 40 for c in completions]\n"
SETTINGS = ["grpo.prompts_per_step=4", "grpo.group_size=4", "grpo.lr=1e-2", "grpo.beta=0.04",
            "rollout.max_new_tokens=16", "eval.problems=4", "eval.k=2", "eval.every=0", "run.progress=false",
            "run.threads=1", "model.lora.r=4", "model.lora.alpha=8"]


def _overrides(tmp_path, model_dir):
    reward_file = tmp_path / "length_reward.py"
    reward_file.write_text(LENGTH_REWARD)
    return [f"model.path={model_dir}", f"run.out_dir={tmp_path}", *SETTINGS,
            f"rewards={{accuracy: 1.0, format: 0.2, '{reward_file}:length_reward': 0.5}}"]


def test_grpo_trains_every_adapter_weight_and_no_base_weight(tmp_path, tiny_model_dir):
    cfg = load_config(ZeroConfig, None, _overrides(tmp_path, tiny_model_dir))
    t = grpo.start(cfg, tmp_path / "run", Events())
    base = {k: v.clone() for k, v in t.model.state_dict().items() if "lora_" not in k}
    adapters = lora.adapter_state_dict(t.model)
    assert adapters and all(p.requires_grad == ("lora_" in n) for n, p in t.model.named_parameters())
    for step in (1, 2, 3):
        row, _ = run_step(t, step)
        assert row["grad_norm"] > 0
    after = t.model.state_dict()
    assert [k for k in base if not torch.equal(base[k], after[k])] == []
    assert [k for k in adapters if torch.equal(adapters[k], after[k])] == []
    # The rollout engine's plain copy holds W + (α/r)·B·A after its refresh, not the stale base.
    t.engine.refresh()
    merged = lora.merged_state_dict(t.model)
    q = "model.layers.0.self_attn.q_proj"
    layer = t.model.get_submodule(q)
    expected = layer.base_layer.weight + (8 / 4) * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(merged[f"{q}.weight"], expected)
    torch.testing.assert_close(t.engine.plain.state_dict()[f"{q}.weight"], expected)
    assert not torch.equal(expected, base[f"{q}.base_layer.weight"])

    path = grpo.save(t)
    plain = AutoModelForCausalLM.from_pretrained(path).eval()  # plain transformers, no peft
    ids = torch.tensor([[3, 5, 7, 11, 13, 17]])
    t.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, t.model(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
    saved = load_file(str(path / "adapter" / "adapter_model.safetensors"))
    assert set(saved) == set(adapters)
    assert json.loads((path / "adapter" / "adapter_config.json").read_text())["r"] == 4


def test_lora_run_resumes_to_the_same_adapter(tmp_path, tiny_model_dir):
    # With gradient checkpointing too: the whole stage path of both memory options at once.
    common = ["zero", *_overrides(tmp_path, tiny_model_dir), "run.save_every=2", "model.gradient_checkpointing=true"]
    assert CliRunner().invoke(app, [*common, "grpo.steps=3", "run.name=straight"]).exit_code == 0
    assert CliRunner().invoke(app, [*common, "grpo.steps=2", "run.name=split"]).exit_code == 0
    resumed = CliRunner().invoke(app, ["zero", "--resume", str(tmp_path / "split"), "grpo.steps=3"])
    assert resumed.exit_code == 0, resumed.output
    a = load_file(str(tmp_path / "straight" / "checkpoint-3" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoint-3" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sft_with_lora_writes_a_merged_model(tmp_path, tiny_model_dir):
    from test_sft import traces

    data = traces(tmp_path / "traces.jsonl", 48)
    args = ["sft", str(data), f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "sft.epochs=1",
            "sft.lr=1e-2", "sft.batch_rows=16", "data.held_out=0.0", "run.threads=1", "run.progress=false",
            "model.lora.r=4", "model.lora.target_modules=[q_proj, v_proj]"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(tmp_path / "sft" / "model" / "model.safetensors"))
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    # Only the adapted projections moved (by their merged low-rank update); everything else is the base.
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    AutoModelForCausalLM.from_pretrained(tmp_path / "sft" / "model")


def test_r_zero_is_full_fine_tuning_and_a_bad_target_is_named(tiny_model_dir):
    model, _ = load_model_dir(tiny_model_dir)
    assert lora.apply(model, LoRAConfig(r=0)) is model and not lora.is_lora(model)
    with pytest.raises(ValueError, match="target"):
        lora.apply(model, LoRAConfig(r=2, target_modules=["no_such_layer"]))


def test_missing_peft_is_a_clear_error(monkeypatch, tiny_model_dir):
    model, _ = load_model_dir(tiny_model_dir)
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match="pip install"):
        lora.apply(model, LoRAConfig(r=2))
