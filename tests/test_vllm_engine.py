"""The vLLM engine's parts that run without vLLM: config validation, the mapping of aha's sampling
parameters and of vLLM's outputs (on stand-ins shaped as vLLM's `RequestOutput`/`CompletionOutput`/
`Logprob`), the weight names sent to vLLM's loaders, and the order of wake / load / reset / sleep
calls that keeps rollouts on the current weights (against a recording stand-in for `vllm.LLM`).
Generation through real vLLM is in tests/test_rollout.py's contract tests and bench/gpu_smoke.py,
which need vllm and a CUDA GPU."""

from __future__ import annotations

import copy
import inspect
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from aha.config import ConfigError, PretrainConfig, TaskConfig, ZeroConfig, load_config
from aha.models.loading import load_model_dir, shipped_base_dir, stop_token_ids
from aha.rollout import VLLM_OPTIONS, SamplingParams, vllm_unavailable
from aha.rollout.vllm_engine import (VLLMEngine, completions_from_outputs, request_seed, sampled_logprobs,
                                     sampling_kwargs, stop_set, vllm_weight_name, vllm_weights)

needs_no_vllm = pytest.mark.skipif(vllm_unavailable() is None, reason="vllm and a GPU are here: nothing refuses")


@pytest.fixture(scope="module")
def base():
    model, tok = load_model_dir(shipped_base_dir(PretrainConfig(), TaskConfig()))
    return model.eval(), tok


# --- configuration ---------------------------------------------------------------------------------

@needs_no_vllm
def test_engine_vllm_without_vllm_fails_at_load_time_without_importing_torch():
    code = ("import sys\nfrom aha.config import ZeroConfig, ConfigError, load_config\n"
            "try:\n    load_config(ZeroConfig, None, ['rollout.engine=vllm'])\nexcept ConfigError as e:\n"
            "    print(e)\nprint('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    message, torch_loaded = out.stdout.strip().splitlines()
    assert message.startswith("rollout.engine=vllm needs `pip install 'aha-rl[vllm]'` and a CUDA GPU")
    assert torch_loaded == "False"


@needs_no_vllm
def test_aha_zero_with_engine_vllm_exits_2_before_any_model_loads(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import aha.models.loading as loading
    from aha.cli import app

    monkeypatch.setattr(loading, "load_model_dir", lambda *a, **k: pytest.fail("a model was loaded"))
    result = CliRunner().invoke(app, ["zero", f"run.out_dir={tmp_path / 'out'}", "rollout.engine=vllm"])
    assert result.exit_code == 2 and "aha-rl[vllm]" in result.output and "CUDA GPU" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, named", [
    ("rollout.options.gpu_mem=0.5", "gpu_mem not taken by rollout.engine=vllm (valid: model_dir"),
    ("rollout.options.sleep_level=3", "rollout.options.sleep_level"),
    ("rollout.options.gpu_memory_utilization=1.5", "rollout.options.gpu_memory_utilization"),
    ("rollout.options.dtype=fp8", "rollout.options.dtype"),
])
def test_vllm_options_are_checked_by_name_and_range(override, named):
    with pytest.raises(ConfigError) as err:
        load_config(ZeroConfig, None, ["rollout.engine=vllm", override])
    assert named in str(err.value)


def test_vllm_top_p_below_one_is_refused_with_several_inner_updates(monkeypatch):
    import aha.rollout

    monkeypatch.setattr(aha.rollout, "vllm_unavailable", lambda: None)  # as on a GPU machine with vllm
    load_config(ZeroConfig, None, ["rollout.engine=vllm", "rollout.top_p=0.9"])  # mu=1: the rollout log-probs are unused
    with pytest.raises(ConfigError, match="renormalised over the top-p nucleus"):
        load_config(ZeroConfig, None, ["rollout.engine=vllm", "rollout.top_p=0.9", "grpo.mu=2"])


def test_the_option_list_config_checks_is_the_engine_signature():
    params = inspect.signature(VLLMEngine).parameters
    taken = [p for p in params if p not in ("model", "tokenizer", "max_batch", "bf16", "llm", "params_cls")]
    assert tuple(taken) == VLLM_OPTIONS


# --- sampling parameters ---------------------------------------------------------------------------

def test_sampling_kwargs_map_aha_params_to_vllm():
    params = SamplingParams(max_new_tokens=48, temperature=0.7, top_p=0.95, stop_token_ids=(9,), seed=3)
    kwargs = sampling_kwargs(params, n=8, eos_id=0, seed=123)
    assert kwargs == dict(n=8, temperature=0.7, top_p=0.95, max_tokens=48, seed=123, stop_token_ids=[0, 9],
                          ignore_eos=False, logprobs=0, detokenize=False)
    forced = sampling_kwargs(SamplingParams(stop_token_ids=(9,), ignore_eos=True), n=1, eos_id=0, seed=1)
    assert forced["stop_token_ids"] == [9] and forced["ignore_eos"]  # as the torch engine: stop tokens still stop


def test_request_seeds_are_fixed_and_unrelated_across_prompts_and_calls():
    assert request_seed(7, 3) == request_seed(7, 3)
    seeds = {request_seed(s, i) for s in range(50) for i in range(50)}
    assert len(seeds) == 2500 and all(0 <= x < 2**63 for x in seeds)
    assert request_seed(7, 1) != request_seed(8, 0)  # step s's prompt 1 is not step s + 1's prompt 0


# --- outputs ---------------------------------------------------------------------------------------

def _sample(index, ids, finish, logprob=-0.5):
    steps = [{t: SimpleNamespace(logprob=logprob * (k + 1), rank=1)} for k, t in enumerate(ids)]
    return SimpleNamespace(index=index, token_ids=tuple(ids), logprobs=steps, finish_reason=finish, text="")


def test_outputs_become_completions_grouped_by_prompt(base):
    _, tok = base
    answer_end = stop_token_ids(tok)[0]
    body = tok.encode("<answer> 7", add_special_tokens=False)
    outputs = [
        SimpleNamespace(outputs=[_sample(1, body + [tok.eos_token_id], "stop"), _sample(0, body + [answer_end], "stop")]),
        SimpleNamespace(outputs=[_sample(0, body, "length"), _sample(1, body[:-1] + [answer_end], "length")]),
    ]
    stops = stop_set(SamplingParams(stop_token_ids=(answer_end,)), tok.eos_token_id)
    out = completions_from_outputs(outputs, 2, tok, stops)
    assert [c.prompt_index for c in out] == [0, 0, 1, 1]
    first, second, third, fourth = out
    assert first.ids == body + [answer_end] and first.text.endswith("</answer>")  # sorted by vLLM's index
    assert second.ids[-1] == tok.eos_token_id and second.text == tok.decode(body, skip_special_tokens=False)
    assert (first.finish_reason, second.finish_reason, third.finish_reason) == ("stop", "stop", "length")
    assert third.truncated and not first.truncated
    # a stop token drawn as the budget's last token ended the sample, as the torch engine counts it
    assert fourth.finish_reason == "stop" and fourth.extra == {"vllm_finish_reason": "length"}
    assert first.logprobs == pytest.approx([-0.5 * (k + 1) for k in range(len(first.ids))])


def test_malformed_outputs_fail_loudly(base):
    _, tok = base
    stops = {tok.eos_token_id}
    one = [SimpleNamespace(outputs=[_sample(0, [5, 6], "length")])]
    with pytest.raises(RuntimeError, match="n=2"):
        completions_from_outputs(one, 2, tok, stops)
    with pytest.raises(RuntimeError, match="abort"):
        completions_from_outputs([SimpleNamespace(outputs=[_sample(0, [5], "abort")])], 1, tok, stops)
    with pytest.raises(RuntimeError, match="no stop token"):
        completions_from_outputs([SimpleNamespace(outputs=[_sample(0, [5, 6], "stop")])], 1, tok, stops)
    with pytest.raises(RuntimeError, match="one log-prob per generated token"):
        sampled_logprobs([5, 6], None)
    with pytest.raises(RuntimeError, match=r"\(2\), got 1"):
        sampled_logprobs([5, 6], [{5: SimpleNamespace(logprob=-1.0)}])


# --- weights ---------------------------------------------------------------------------------------

def test_weight_names_strip_wrappers_and_drop_adapter_tensors():
    assert vllm_weight_name("model.layers.0.mlp.up_proj.weight") == "model.layers.0.mlp.up_proj.weight"
    assert vllm_weight_name("_orig_mod.model.norm.weight") == "model.norm.weight"
    assert vllm_weight_name("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight") == \
        "model.layers.0.self_attn.q_proj.weight"
    assert vllm_weight_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") is None
    assert vllm_weight_name("model.layers.0.self_attn.q_proj.lora_B.default.weight") is None
    assert vllm_weight_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert vllm_weight_name("base_model.model.lm_head.original_module.weight") is None


def test_merged_peft_weights_arrive_under_the_plain_model_names(base):
    peft = pytest.importorskip("peft")
    from aha.config.sections import LoRAConfig
    from aha.models import lora

    model, _ = base
    plain_names = set(model.state_dict())
    config = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    # aha's in-place adapters, merged by aha (what the LoRA engine wrapper sends)
    injected = lora.apply(copy.deepcopy(model), LoRAConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    for name, p in injected.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a non-zero update, so merged ≠ base
    merged = dict(vllm_weights(lora.merged_state_dict(injected)))
    assert set(merged) == plain_names
    # a PeftModel holding the same adapter, merged into its base layers in place (as TRL syncs it)
    wrapped = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(**config))
    adapter = dict(injected.named_parameters())
    for name, p in wrapped.named_parameters():
        if "lora_" in name:
            p.data.copy_(adapter[name.removeprefix("base_model.model.")])
    wrapped.merge_adapter()
    synced = dict(vllm_weights(wrapped.state_dict()))
    assert set(synced) == plain_names
    for name in plain_names:
        torch.testing.assert_close(synced[name], merged[name], rtol=1e-5, atol=1e-6)
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           model.state_dict()["model.layers.0.self_attn.q_proj.weight"])


# --- wake / load / reset / sleep order, against a recording stand-in for vllm.LLM ------------------

class FakeLLM:
    """Records calls; `generate` answers every prompt with n samples of [7, EOS]."""

    def __init__(self, eos: int, reset_ok: bool = True):
        self.calls, self.eos, self.reset_ok, self.loaded = [], eos, reset_ok, []
        self.model = SimpleNamespace(load_weights=lambda weights: self.loaded.append([k for k, _ in weights]))

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append(("generate", len(prompts)))
        self.requests = list(zip(prompts, params))
        return [SimpleNamespace(outputs=[_sample(i, [7, self.eos], "stop") for i in range(p["n"])]) for p in params]

    def apply_model(self, fn):
        self.calls.append(("apply_model",))
        return [fn(self.model)]

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags)))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))
        return self.reset_ok


def _engine(base, **kw):
    model, tok = base
    fake = FakeLLM(tok.eos_token_id, **{k: kw.pop(k) for k in ("reset_ok",) if k in kw})
    return VLLMEngine(model, tok, llm=fake, params_cls=dict, **kw), fake


def test_generate_sends_token_prompts_with_a_seed_each(base):
    engine, fake = _engine(base)
    out = engine.generate([[3, 4, 5], [6, 7]], SamplingParams(max_new_tokens=8, seed=11), n=3)
    assert [c.prompt_index for c in out] == [0, 0, 0, 1, 1, 1] and all(c.ids == [7, fake.eos] for c in out)
    (p0, r0), (p1, r1) = fake.requests
    assert p0 == {"prompt_token_ids": [3, 4, 5]} and p1 == {"prompt_token_ids": [6, 7]}
    assert (r0["seed"], r1["seed"]) == (request_seed(11, 0), request_seed(11, 1)) and r0["n"] == 3
    # row-keyed noise: this call's prompts are the step's prompts 4 and 5
    engine.generate([[3], [4]], SamplingParams(seed=11, row_offset=4 * 2), n=2)
    assert [r["seed"] for _, r in fake.requests] == [request_seed(11, 4), request_seed(11, 5)]
    assert fake.calls == [("generate", 2), ("generate", 2)]  # no sleep: nothing to wake


def test_weights_are_woken_before_loading_and_the_prefix_cache_reset_after(base):
    engine, fake = _engine(base, sleep=True, sleep_level=1)
    engine.generate([[3, 4]], SamplingParams(), n=1)
    engine.load_weights(engine.policy.state_dict())
    engine.generate([[3, 4]], SamplingParams(), n=1)
    assert fake.calls == [("generate", 1), ("sleep", 1),
                          ("wake_up", ("weights",)), ("apply_model",), ("reset_prefix_cache",),
                          ("wake_up", ("kv_cache",)), ("generate", 1), ("sleep", 1)]
    assert set(fake.loaded[0]) == set(base[0].state_dict())


def test_after_a_level_2_sleep_weights_come_from_the_policy_not_from_disk(base):
    engine, fake = _engine(base, sleep=True, sleep_level=2)
    engine.generate([[3]], SamplingParams(), n=1)
    engine.generate([[3]], SamplingParams(), n=1)  # no update in between: vLLM's weights were dropped
    assert fake.calls[2:] == [("wake_up", ("weights",)), ("apply_model",), ("reset_prefix_cache",),
                              ("wake_up", ("kv_cache",)), ("generate", 1), ("sleep", 2)]
    fake.calls.clear()
    engine.load_weights(engine.policy.state_dict())  # an update: synced once, not again at generate
    engine.generate([[3]], SamplingParams(), n=1)
    assert [c[0] for c in fake.calls].count("apply_model") == 1


def test_a_refused_prefix_cache_reset_is_an_error(base):
    engine, _ = _engine(base, reset_ok=False)
    with pytest.raises(RuntimeError, match="prefix cache"):
        engine.load_weights(engine.policy.state_dict())


def test_empty_prompts_are_refused_before_vllm_sees_them(base):
    engine, fake = _engine(base)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        engine.generate([[3], []], SamplingParams())
    assert fake.calls == [] and engine.generate([], SamplingParams()) == []


def test_the_lora_wrapper_sends_merged_weights_to_the_engine_before_each_generate(base):
    pytest.importorskip("peft")
    from aha.config.sections import LoRAConfig
    from aha.models import lora

    model, tok = base
    policy = lora.apply(copy.deepcopy(model), LoRAConfig(r=4, alpha=8, target_modules=("q_proj",)))
    fakes = []

    def make(plain):
        engine, fake = _engine((plain, tok))
        fakes.append(fake)
        return engine

    wrapped = lora.MergedEngine(policy, make)
    wrapped.generate([[3, 4]], SamplingParams(), n=1)
    fake = fakes[0]
    assert fake.calls[:3] == [("apply_model",), ("reset_prefix_cache",), ("generate", 1)]
    assert set(fake.loaded[0]) == set(model.state_dict())


# --- the GPU smoke script's verdict (the script itself needs vllm and CUDA) ------------------------

def test_gpu_smoke_verdict_needs_synced_variants_below_and_the_stale_control_above_the_gap():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu_smoke", Path(__file__).parents[1] / "bench" / "gpu_smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    good = {"torch": {"gaps": [0.001, 0.002]}, "vllm": {"gaps": [0.01, 0.02]}, "vllm-stale": {"gaps": [0.01, 0.3]}}
    assert smoke.verdict(good, 0.05) == []
    stale_sync = {**good, "vllm-sleep1": {"gaps": [0.01, 0.3]}}
    assert smoke.verdict(stale_sync, 0.05) == ["vllm-sleep1: log-prob gap 0.3000 > 0.05 (stale or wrong weights?)"]
    insensitive = {**good, "vllm-stale": {"gaps": [0.01, 0.02]}}
    assert "did not move enough" in smoke.verdict(insensitive, 0.05)[0]
    assert smoke.verdict({**good, "vllm": {"error": "exit 1"}}, 0.05) == ["vllm: exit 1"]
