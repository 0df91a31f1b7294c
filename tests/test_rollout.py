"""The rollout contract, kept by every engine (the torch engine's backends, and vLLM — colocated, and
aha's vLLM server in a subprocess — where vllm and a CUDA GPU are present), and the torch engine's
fast paths checked against naive generation."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from aha import kernels
from aha.models.loading import load_model_dir, stop_token_ids
from aha.rollout import SamplingParams, lean_qwen2, vllm_unavailable
from aha.rollout.torch_engine import TorchEngine
from aha.tasks import get_task
from aha.template import build_prompt

# The lean static-cache forward: its steps through the compiled CPU kernel ("fused"), or at the
# PyTorch level with prompt K/V read through cascade attention or copied into each row's cache (as
# it does for short prompts); and the module's own forward + DynamicCache.
BACKENDS = ["fused", "cascade", "rows", "module"]
# Every engine the contract tests run: the torch engine's backends, and vLLM colocated and as aha's
# server (both skipped without vllm and CUDA).
ENGINES = [*BACKENDS, "vllm", "vllm_server"]
VLLM_ENGINES = ("vllm", "vllm_server")


@pytest.fixture(autouse=True)
def _lean_attention(request, monkeypatch):
    params = request.node.callspec.params if hasattr(request.node, "callspec") else {}
    backend = params.get("lean", params.get("engine"))
    if backend == "fused":
        if kernels.decode_ops() is None:
            pytest.skip(f"the CPU decode kernel could not be built: {kernels.disabled_reason() or 'build failed'}")
        monkeypatch.setattr(lean_qwen2, "FUSED", True)
    if backend in ("cascade", "rows"):
        monkeypatch.setattr(lean_qwen2, "FUSED", False)
        monkeypatch.setattr(lean_qwen2, "CASCADE_MIN_PROMPT", 0 if backend == "cascade" else 10**6)


def _prompts(tok):
    problems = get_task("division").problems("test", 4, seed=3)
    prompts = [tok(build_prompt(p.question))["input_ids"] for p in problems]
    prompts[1] = prompts[1][2:]  # unequal lengths: left padding is exercised
    return prompts


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    torch.set_num_threads(1)
    model, tok = load_model_dir(tiny_model_dir)
    return model.eval(), tok, _prompts(tok)


@pytest.fixture(scope="module")
def vllm_setup():
    """One vLLM engine for the module (vLLM runs one engine per process), fp32 so that its numbers
    compare with the CPU model's, on the shipped base (head size 32: vLLM's attention kernels take it)."""
    reason = vllm_unavailable()
    if reason:
        pytest.skip(f"the vllm engine needs vllm and a CUDA GPU ({reason})")
    from aha.config import PretrainConfig, TaskConfig
    from aha.models.loading import shipped_base_dir
    from aha.rollout.vllm_engine import VLLMEngine

    model, tok = load_model_dir(shipped_base_dir(PretrainConfig(), TaskConfig()))
    engine = VLLMEngine(model, tok, dtype="float32", gpu_memory_utilization=0.2, enforce_eager=True)
    return engine, model.eval(), tok, _prompts(tok)


@pytest.fixture(scope="module")
def vllm_server_setup():
    """`python -m aha.rollout.vllm_server` on the shipped base (fp32) in a subprocess on this GPU, and
    the server engine in front of it; weights go over HTTP (NCCL refuses two ranks on one GPU)."""
    reason = vllm_unavailable()
    if reason:
        pytest.skip(f"the vllm_server engine needs vllm and a CUDA GPU ({reason})")
    from aha.config import PretrainConfig, TaskConfig
    from aha.models.loading import shipped_base_dir
    from aha.rollout.vllm_server_engine import VLLMServerEngine

    model_dir = shipped_base_dir(PretrainConfig(), TaskConfig())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "aha.rollout.vllm_server", str(model_dir), "--host", "127.0.0.1",
                               "--port", str(port), "--dtype", "float32", "--gpu-memory-utilization", "0.2",
                               "--enforce-eager"])
    try:
        model, tok = load_model_dir(model_dir)
        engine = VLLMServerEngine(model, tok, port=port, startup_timeout=600, weight_transport="http")
        yield engine, model.eval(), tok, _prompts(tok)
    finally:
        server.terminate()
        server.wait(60)


@pytest.fixture
def contract(request, setup):
    """(make_engine(**torch_engine_options), model, tokenizer, prompts) for this test's engine."""
    engine = request.node.callspec.params["engine"]
    if engine in VLLM_ENGINES:
        shared, model, tok, prompts = request.getfixturevalue(f"{engine}_setup")
        return (lambda **_: shared), model, tok, prompts
    model, tok, prompts = setup
    return (lambda **kw: TorchEngine(model, tok, lean=engine != "module", **kw)), model, tok, prompts


# Log-prob agreement with the CPU model's full forward: vLLM runs other kernels on another device.
LOGPROB_ATOL = {"vllm": 1e-2, "vllm_server": 1e-2}


def naive_greedy(model, prompt: list[int], max_new: int, stops: set[int]) -> list[int]:
    """No cache, no padding: the full sequence through the model for every token."""
    ids = list(prompt)
    for _ in range(max_new):
        with torch.no_grad():
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        ids.append(nxt)
        if nxt in stops:
            break
    return ids[len(prompt):]


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_matches_naive(contract, engine):
    make, model, tok, prompts = contract
    stops = stop_token_ids(tok)
    out = make().generate(prompts, SamplingParams(max_new_tokens=40, temperature=0, stop_token_ids=stops), n=2)
    for c in out:
        expected = naive_greedy(model, prompts[c.prompt_index], 40, {tok.eos_token_id, *stops})
        assert c.ids == expected


def test_lean_engine_is_the_default_for_qwen2(setup):
    model, tok, _ = setup
    assert TorchEngine(model, tok).lean


@pytest.mark.parametrize("engine", ENGINES)
def test_grouped_ordering_and_shapes(contract, engine):
    make, model, tok, prompts = contract
    out = make(max_batch=5).generate(prompts, SamplingParams(max_new_tokens=12), n=3)
    assert [c.prompt_index for c in out] == [i for i in range(len(prompts)) for _ in range(3)]
    for c in out:
        assert 1 <= len(c.ids) <= 12 and len(c.logprobs) == len(c.ids)
        assert all(lp <= 0 for lp in c.logprobs)
        assert c.finish_reason == ("length" if c.truncated else "stop")
        assert c.truncated == (len(c.ids) == 12 and c.ids[-1] != tok.eos_token_id)


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_tokens_end_completions(contract, engine):
    make, model, tok, prompts = contract
    stops = stop_token_ids(tok)
    assert stops, "the embedded tokenizer has </answer> as one token"
    ends = {tok.eos_token_id, *stops}
    params = SamplingParams(max_new_tokens=48, stop_token_ids=stops, seed=1)
    out = make().generate(prompts, params, n=8)
    assert any(c.finish_reason == "stop" for c in out)
    for c in out:
        assert not ends & set(c.ids[:-1])  # nothing is generated past a stop
        assert (c.finish_reason == "stop") == (c.ids[-1] in ends)
        if c.finish_reason == "stop" and c.ids[-1] != tok.eos_token_id:
            assert c.text.endswith("</answer>")


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_samples(contract, engine):
    make, model, tok, prompts = contract
    engine = make()
    a = engine.generate(prompts, SamplingParams(max_new_tokens=20, seed=7), n=4)
    b = engine.generate(prompts, SamplingParams(max_new_tokens=20, seed=7), n=4)
    c = engine.generate(prompts, SamplingParams(max_new_tokens=20, seed=8), n=4)
    assert [x.ids for x in a] == [x.ids for x in b]
    assert [x.ids for x in a] != [x.ids for x in c]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_logprobs_equal_a_full_forward(contract, engine, temperature, top_p):
    make, model, tok, prompts = contract
    if engine in VLLM_ENGINES and top_p < 1:
        pytest.skip("vLLM renormalises its log-probs over the top-p nucleus (documented in aha.rollout.vllm_engine)")
    params = SamplingParams(max_new_tokens=24, temperature=temperature, top_p=top_p, seed=2)
    for c in make().generate(prompts, params, n=3):
        seq = torch.tensor([prompts[c.prompt_index] + c.ids])
        with torch.no_grad():
            logits = model(input_ids=seq).logits[0, len(prompts[c.prompt_index]) - 1 : -1]  # (Tc, V)
        expected = torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(c.ids)[:, None]).squeeze(-1)
        torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=LOGPROB_ATOL.get(engine, 2e-4), rtol=1e-4)


def test_top_p_draws_only_from_the_nucleus(setup):
    model, tok, prompts = setup
    params = SamplingParams(max_new_tokens=1, temperature=1.0, top_p=0.5, seed=0)
    out = TorchEngine(model, tok).generate(prompts[:1], params, n=64)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([prompts[0]])).logits[0, -1], -1)
    p_sorted, order = probs.sort(descending=True)
    nucleus = set(order[: int((p_sorted.cumsum(0) - p_sorted < 0.5).sum())].tolist())
    assert {c.ids[0] for c in out} <= nucleus


def test_samples_follow_the_model_distribution(setup):
    # The inverse-CDF sampler must draw tokens in proportion to their probability.
    model, tok, prompts = setup
    params = SamplingParams(max_new_tokens=1, temperature=1.5, seed=0)
    out = TorchEngine(model, tok, max_batch=4096).generate(prompts[:1], params, n=4000)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([prompts[0]])).logits[0, -1] / 1.5, -1)
    counts = torch.bincount(torch.tensor([c.ids[0] for c in out]), minlength=probs.numel()).float() / len(out)
    assert (counts - probs).abs().max() < 0.03


def test_restores_training_mode(setup):
    model, tok, prompts = setup
    model.train()
    TorchEngine(model, tok).generate(prompts[:1], SamplingParams(max_new_tokens=2))
    assert model.training
    model.eval()


@pytest.mark.parametrize("lean", BACKENDS)
def test_greedy_matches_naive_past_cache_growth(setup, lean):
    """150 new tokens: the lean cache grows twice (64-column chunks) and must stay exact."""
    model, tok, prompts = setup
    out = TorchEngine(model, tok, lean=lean != "module").generate(
        prompts[:2], SamplingParams(max_new_tokens=150, temperature=0, ignore_eos=True), n=1)
    for c in out:
        assert len(c.ids) == 150
        assert c.ids == naive_greedy(model, prompts[c.prompt_index], 150, set())


@pytest.mark.parametrize("lean", BACKENDS)
def test_bf16_rollout_samples_the_fp32_policy(setup, lean):
    """A bf16 rollout's log-probs are the fp32 policy's up to bf16 rounding: the update measures the
    gap on the sampled tokens, and it is small but not zero (the two really run different precision)."""
    from aha.train.update import RolloutBatch, policy_update

    model, tok, prompts = setup
    params = SamplingParams(max_new_tokens=100, temperature=1.0, seed=1, ignore_eos=True)
    gaps = {}
    for bf16 in (False, True):
        out = TorchEngine(model, tok, lean=lean != "module", bf16=bf16).generate(prompts, params, n=4)
        assert all(len(c.ids) == 100 for c in out)
        batch = RolloutBatch.from_completions(prompts, out, torch.zeros(len(out)))
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        stats = policy_update(model, opt, batch, pad_id=tok.pad_token_id, micro_batch_size=64, mu=1, eps_low=0.2,
                              eps_high=0.2, beta=0.0, loss_agg="token-mean", max_len=100, temperature=1.0,
                              max_grad_norm=1.0)
        model.eval()
        gaps[bf16] = stats["rollout_logprob_gap"]
    assert gaps[False] < 1e-4  # fp32 sampler and fp32 trainer: the same numbers
    assert 1e-4 < gaps[True] < 0.05, gaps


@pytest.mark.parametrize("engine", ENGINES)
def test_ignore_eos_runs_every_sample_to_the_budget(contract, engine):
    make, model, tok, prompts = contract
    params = SamplingParams(max_new_tokens=30, temperature=1.0, seed=2)
    stopped = make().generate(prompts, params, n=2)
    assert any(c.finish_reason == "stop" for c in stopped)  # the tiny base does end on EOS
    forced = make().generate(prompts, SamplingParams(**{**params.__dict__, "ignore_eos": True}), n=2)
    assert all(len(c.ids) == 30 and c.finish_reason == "length" for c in forced)


@pytest.mark.parametrize("lean", BACKENDS)
def test_bf16_row_rounding_keeps_samples(lean, monkeypatch):
    """Finished rows kept to round the batch up (bf16 on CPU) are ignored: greedy decoding gives the
    same completions. (Sampled ones differ: each row in the batch draws its own random number.)
    On the shipped demo base, whose greedy answers end at different steps."""
    from aha.config import PretrainConfig, TaskConfig
    from aha.models.loading import shipped_base_dir
    from aha.rollout import torch_engine

    model, tok = load_model_dir(shipped_base_dir(PretrainConfig(), TaskConfig()))
    prompts = [tok(build_prompt(p.question))["input_ids"] for p in get_task("division").problems("test", 24, seed=5)]
    params = SamplingParams(max_new_tokens=48, temperature=0, stop_token_ids=stop_token_ids(tok))
    runs = []
    for bucket in (1, 8):
        monkeypatch.setattr(torch_engine, "ROW_BUCKET_BF16_CPU", bucket)
        runs.append(TorchEngine(model, tok, lean=lean != "module", bf16=True).generate(prompts, params))
    lengths = [len(c.ids) for c in runs[0]]
    # Rows finished at different steps, and the ones left were not a multiple of 8: rounding happened.
    assert sum(n > min(lengths) for n in lengths) % 8 != 0
    assert [(c.ids, c.finish_reason) for c in runs[1]] == [(c.ids, c.finish_reason) for c in runs[0]]
    for a, b in zip(runs[0], runs[1]):
        assert a.logprobs == pytest.approx(b.logprobs, abs=0.05)
