"""Server mode (`rollout.engine=vllm_server`, `aha vllm-serve`) on CPU: aha's real server app
(`aha.rollout.vllm_server.create_app`) with aha's torch engine standing in for vLLM behind it, reached
in-process through Starlette's TestClient, and a queue standing in for NCCL. What is checked: the
client's request/response mapping, the weight names and tensors that reach the server, the order
sync → prefix-cache reset → next generate, the weights version that keeps ranks off stale weights,
the NCCL rendezvous timeout, the unreachable-server error, the worker extension's drain on a failed
load, and config validation. vLLM itself: tests/test_rollout.py's contract tests (skipped without
vllm and CUDA) and bench/gpu_smoke.py's server variants."""

from __future__ import annotations

import copy
import queue
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient

from aha.config import ConfigError, ZeroConfig, load_config
from aha.models.loading import load_model_dir, stop_token_ids
from aha.rollout import VLLM_SERVER_OPTIONS, SamplingParams, make_engine, vllm_unavailable
from aha.rollout.torch_engine import TorchEngine
from aha.rollout.vllm_server import WeightServer, create_app
from aha.rollout.vllm_server_engine import ServerUnreachable, VLLMServerEngine
from aha.rollout.vllm_worker import WeightSyncExtension
from aha.tasks import get_task
from aha.template import build_prompt


class FakeFabric:
    """NCCL's place between the trainer and the stand-in's workers: a rendezvous and a queue."""

    def __init__(self, join: bool = True):
        self.queue, self.joined, self.join = queue.Queue(), threading.Event(), join

    def communicator(self, host, port, rank, world_size, device, timeout):  # the trainer's side
        if not self.join:  # a trainer stuck in the rendezvous (wrong port, firewalled …)
            threading.Event().wait(timeout * 10)
        self.joined.set()
        return self

    def broadcast(self, tensor, src):
        self.queue.put(tensor.clone())


class TorchBackend:
    """vLLM's place in the server: aha's torch engine on its own copy of the model; records calls."""

    def __init__(self, model, tok, fabric: FakeFabric | None = None):
        self.model, self.tok, self.fabric = model, tok, fabric or FakeFabric()
        self.engine, self.calls, self.loaded = TorchEngine(model, tok), [], []

    def info(self):
        return {"model": "stand-in", "tensor_parallel_size": 1, "dtype": "float32", "max_model_len": 2048,
                "backend": "torch"}

    def generate(self, prompts, sampling):
        self.calls.append("generate")
        out = []
        for prompt, kw in zip(prompts, sampling):
            params = SamplingParams(max_new_tokens=kw["max_tokens"], temperature=kw["temperature"], top_p=kw["top_p"],
                                    stop_token_ids=tuple(kw["stop_token_ids"]), seed=kw["seed"],
                                    ignore_eos=kw["ignore_eos"])
            out.append([{"token_ids": c.ids, "logprobs": c.logprobs, "finish_reason": c.finish_reason}
                        for c in self.engine.generate([prompt], params, n=kw["n"])])
        return out

    def rpc(self, method, args, timeout):
        self.calls.append(method)
        if method == "load_weights_file":
            from safetensors.torch import load_file

            return self._load(list(load_file(args[0]).items()))
        if method == "init_weight_sync":
            if not self.fabric.joined.wait(args[3]):
                raise RuntimeError("the trainer never joined the group (store timeout)")
        if method == "update_weights":
            received = []
            for name, dtype, shape in args[0]:
                tensor = self.fabric.queue.get(timeout=timeout)
                assert str(tensor.dtype) == f"torch.{dtype}" and list(tensor.shape) == shape, name
                received.append((name, tensor))
            return self._load(received)

    def _load(self, named):
        self.loaded.append([name for name, _ in named])
        missing = {name for name, _ in named} - set(self.model.state_dict())
        if missing:
            raise KeyError(f"no such weights: {sorted(missing)[:3]}")  # as vLLM's load_weights
        self.model.load_state_dict(dict(named), strict=False)
        return len(named)

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")
        return True


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    torch.set_num_threads(1)
    model, tok = load_model_dir(tiny_model_dir)
    problems = get_task("division").problems("test", 3, seed=3)
    return model.eval(), tok, [tok(build_prompt(p.question))["input_ids"] for p in problems]


class InProcessClient(TestClient):
    """The app in this process; the engine's per-request timeouts do not apply (Starlette warns on them)."""

    def request(self, *args, timeout=None, **kwargs):
        return super().request(*args, **kwargs)


def stand_in(model, tok, fabric=None, version_wait=5.0):
    """(server, in-process HTTP client) over a copy of `model` (the server holds its own weights)."""
    backend = TorchBackend(copy.deepcopy(model).eval(), tok, fabric)
    server = WeightServer(backend, version_wait=version_wait)
    return server, InProcessClient(create_app(server), base_url="http://stand-in:8000")


def client_engine(model, tok, client, **options):
    return VLLMServerEngine(model, tok, base_url="http://stand-in:8000", client=client, startup_timeout=2,
                            **{"weight_transport": "http", **options})


def full_forward_logprobs(model, prompt, ids, temperature=1.0):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)


def perturbed(model, scale=0.05, seed=0):
    """A copy of `model` one "update" away: every weight moved by noise the log-probs feel."""
    moved = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return moved.eval()


# --- request / response mapping ------------------------------------------------------------------

def test_generate_maps_the_request_and_the_reply(tiny):
    model, tok, prompts = tiny
    server, client = stand_in(model, tok)
    engine = client_engine(model, tok, client)
    stops = stop_token_ids(tok)
    params = SamplingParams(max_new_tokens=24, temperature=0.8, stop_token_ids=stops, seed=5)
    out = engine.generate(prompts, params, n=3)
    assert [c.prompt_index for c in out] == [i for i in range(len(prompts)) for _ in range(3)]
    ends = {tok.eos_token_id, *stops}
    for c in out:
        assert 1 <= len(c.ids) <= 24 and len(c.logprobs) == len(c.ids)
        assert (c.finish_reason == "stop") == (c.ids[-1] in ends)
        assert c.extra["vllm_finish_reason"] in ("stop", "length")
        expected = full_forward_logprobs(model, prompts[c.prompt_index], c.ids, 0.8)
        torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=2e-4, rtol=1e-4)
    # Seeds are per prompt: the same seed gives the same samples, another seed others.
    assert [c.ids for c in engine.generate(prompts, params, n=3)] == [c.ids for c in out]
    other = engine.generate(prompts, SamplingParams(**{**params.__dict__, "seed": 6}), n=3)
    assert [c.ids for c in other] != [c.ids for c in out]


def test_row_offset_keys_each_prompt_by_its_row_in_the_step(tiny):
    """A process decoding prompts 1–2 of a step draws what one process decoding 0–2 draws for them."""
    model, tok, prompts = tiny
    _, client = stand_in(model, tok)
    engine = client_engine(model, tok, client)
    params = SamplingParams(max_new_tokens=16, seed=9, row_offset=0)
    whole = engine.generate(prompts, params, n=2)
    share = engine.generate(prompts[1:], SamplingParams(**{**params.__dict__, "row_offset": 2}), n=2)
    assert [c.ids for c in share] == [c.ids for c in whole[2:]]


# --- weight sync ---------------------------------------------------------------------------------

def test_sync_then_prefix_reset_then_generate_on_the_new_weights(tiny):
    model, tok, prompts = tiny
    server, client = stand_in(model, tok)
    trainer = perturbed(model)  # the trainer's policy differs from what the server loaded from disk
    engine = client_engine(trainer, tok, client)
    params = SamplingParams(max_new_tokens=12, seed=1)
    engine.generate(prompts[:1], params)
    # The first generate pushed the trainer's weights before sampling (never the server's disk copy).
    assert server.backend.calls == ["load_weights_file", "reset_prefix_cache", "generate"]
    assert server.version == 1
    updated = perturbed(trainer, seed=1)
    engine.load_weights(updated.state_dict())
    out = engine.generate(prompts, params, n=2)
    assert server.backend.calls[3:] == ["load_weights_file", "reset_prefix_cache", "generate"]
    for c in out:  # sampled by the updated weights: the log-prob gap is float noise
        expected = full_forward_logprobs(updated, prompts[c.prompt_index], c.ids)
        torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=2e-4, rtol=1e-4)
    # The control: the previous weights score these samples visibly differently (the check has teeth).
    gaps = [(torch.tensor(c.logprobs) - full_forward_logprobs(trainer, prompts[c.prompt_index], c.ids)).abs().mean()
            for c in out]
    assert max(gaps) > 1e-2


def test_nccl_transport_announces_then_broadcasts_in_order(tiny):
    model, tok, prompts = tiny
    fabric = FakeFabric()
    server, client = stand_in(model, tok, fabric)
    trainer = perturbed(model)
    engine = client_engine(trainer, tok, client, weight_transport="nccl", communicator=fabric.communicator,
                           device="cpu", sync_timeout=5)
    out = engine.generate(prompts[:2], SamplingParams(max_new_tokens=10, seed=2), n=2)
    assert server.backend.calls == ["init_weight_sync", "update_weights", "reset_prefix_cache", "generate"]
    assert fabric.queue.empty()  # every broadcast tensor was announced and received
    assert server.backend.loaded[0] == list(trainer.state_dict())
    for c in out:
        expected = full_forward_logprobs(trainer, prompts[c.prompt_index], c.ids)
        torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=2e-4, rtol=1e-4)
    engine.load_weights(model.state_dict())  # the group is formed once; later updates reuse it
    assert server.backend.calls[4:] == ["update_weights", "reset_prefix_cache"] and server.version == 2


def test_weight_names_reach_the_server_as_vllm_reads_them(tiny):
    """peft / torch.compile wrapper names are mapped to the plain HF names; adapter tensors are dropped."""
    model, tok, _ = tiny
    server, client = stand_in(model, tok)
    engine = client_engine(model, tok, client)
    plain = model.state_dict()
    wrapped = {f"base_model.model.{k}".replace("model.layers.0.", "model.layers.0._orig_mod."): v
               for k, v in plain.items()}
    wrapped["base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"] = torch.zeros(2, 2)
    engine.load_weights(wrapped)
    assert sorted(server.backend.loaded[-1]) == sorted(plain)


def test_a_name_the_server_lacks_is_a_clear_error(tiny):
    model, tok, _ = tiny
    _, client = stand_in(model, tok)
    engine = client_engine(model, tok, client)
    with pytest.raises(RuntimeError, match=r"/weights/load → 500: loading the weights failed: KeyError.*not\.a\.weight"):
        engine.load_weights({"not.a.weight": torch.zeros(2)})


def test_other_ranks_wait_for_rank_0s_push(tiny):
    model, tok, prompts = tiny
    server, client = stand_in(model, tok, version_wait=0.3)
    rank0 = client_engine(model, tok, client, rank=0)
    rank1 = client_engine(model, tok, client, rank=1)
    params = SamplingParams(max_new_tokens=6, seed=0)
    with pytest.raises(RuntimeError, match=r"409.*weights_version 0 < 1.*has not reached this server"):
        rank1.generate(prompts[:1], params)  # rank 1 counts rank 0's first push, which has not happened
    assert "load_weights_file" not in server.backend.calls  # rank 1 pushed nothing
    rank0.generate(prompts[:1], params)
    assert len(rank1.generate(prompts[:1], params)) == 1


def test_server_refuses_a_group_of_the_wrong_size(tiny):
    model, tok, _ = tiny
    _, client = stand_in(model, tok)
    reply = client.post("/weights/init", json={"host": "0.0.0.0", "port": 51216, "world_size": 3})
    assert reply.status_code == 400 and "1 vLLM workers + the trainer = 2" in reply.json()["detail"]


def test_nccl_rendezvous_that_never_forms_fails_within_the_timeout(tiny):
    model, tok, prompts = tiny
    fabric = FakeFabric(join=False)
    server, client = stand_in(model, tok, fabric)
    engine = client_engine(model, tok, client, weight_transport="nccl", communicator=fabric.communicator,
                           device="cpu", sync_timeout=0.5)
    clock = time.monotonic()
    with pytest.raises(RuntimeError, match=r"NCCL weight group .* did not form within 0.5 s: timed out; server: .*500.*never joined"):
        engine.generate(prompts[:1], SamplingParams(max_new_tokens=4))
    assert time.monotonic() - clock < 10
    assert "generate" not in server.backend.calls  # nothing sampled from weights that were never pushed


# --- an unreachable server -----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_clear_error_naming_the_url(tiny):
    model, tok, _ = tiny
    port = _free_port()
    clock = time.monotonic()
    with pytest.raises(ServerUnreachable, match=rf"no aha vLLM server answered at http://127.0.0.1:{port}/health "
                                                r"within 1 s .*aha vllm-serve"):
        make_engine("vllm_server", model, tok, port=port, startup_timeout=1, weight_transport="http")
    assert time.monotonic() - clock < 10
    assert issubclass(ServerUnreachable, ValueError)  # the CLI reports it without a traceback


# --- the worker extension (vLLM's side), on CPU with stand-ins for the worker's parts --------------

def test_worker_keeps_receiving_after_a_failed_load():
    """A worker that stopped listening after a bad tensor would leave the trainer's next broadcast hung."""
    received, loaded = [], []

    class Comm:
        def broadcast(self, tensor, src):
            tensor.fill_(len(received))
            received.append(src)

    def load_weights(weights):
        name = weights[0][0]
        if name == "bad":
            raise KeyError(name)
        loaded.append(name)

    worker = WeightSyncExtension()
    worker.device = torch.device("cpu")
    worker.model_runner = SimpleNamespace(model=SimpleNamespace(load_weights=load_weights))
    worker._weight_comm, worker._trainer_rank = Comm(), 1
    tensors = [["a", "float32", [2]], ["bad", "bfloat16", [3, 1]], ["c", "float32", [1]]]
    with pytest.raises(RuntimeError, match="failed at bad: KeyError"):
        worker.update_weights(tensors)
    assert received == [1, 1, 1] and loaded == ["a"]  # all three received from the trainer's rank


# --- configuration ---------------------------------------------------------------------------------

def test_options_listed_for_validation_are_the_constructor_s():
    import inspect

    taken = set(inspect.signature(VLLMServerEngine.__init__).parameters)
    assert set(VLLM_SERVER_OPTIONS) == taken - {"self", "model", "tokenizer", "max_batch", "bf16", "client",
                                                "communicator", "rank"}


@pytest.mark.parametrize("option, message", [
    ("rollout.options.colour=1", r"colour not taken by rollout.engine=vllm_server"),
    ("rollout.options.port=70000", r"rollout.options.port: expected a port number"),
    ("rollout.options.base_url=localhost:8000", r"rollout.options.base_url: expected an http"),
    ("rollout.options.sync_timeout=0", r"rollout.options.sync_timeout: expected a finite number > 0"),
    ("rollout.options.weight_transport=ipc", r"weight_transport: expected nccl .* or http"),
])
def test_config_refuses_bad_options(option, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ZeroConfig, None, ["rollout.engine=vllm_server", "rollout.options.weight_transport=http",
                                       option])


def test_config_takes_http_transport_and_refuses_nucleus_logprobs_as_pi_old():
    cfg = load_config(ZeroConfig, None, ["rollout.engine=vllm_server", "rollout.options.weight_transport=http",
                                         "rollout.options.base_url=http://10.0.0.2:8000"])
    assert cfg.rollout.options["base_url"] == "http://10.0.0.2:8000"
    with pytest.raises(ConfigError, match="rollout.engine=vllm_server and grpo.mu > 1"):
        load_config(ZeroConfig, None, ["rollout.engine=vllm_server", "rollout.options.weight_transport=http",
                                       "rollout.top_p=0.9", "grpo.mu=2"])


@pytest.mark.skipif(vllm_unavailable() is None, reason="vllm and a GPU are here: nothing refuses")
def test_config_nccl_transport_without_vllm_names_the_alternative():
    with pytest.raises(ConfigError, match=r"weight_transport=nccl needs vllm .* or set rollout.options.weight_transport=http"):
        load_config(ZeroConfig, None, ["rollout.engine=vllm_server"])


# --- the GPU smoke script's server variants (the script itself needs vllm and CUDA) ------------------

def test_gpu_smoke_server_variants_configure_the_engine_and_are_judged_like_the_colocated_ones(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu_smoke", Path(__file__).parents[1] / "bench" / "gpu_smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    args = SimpleNamespace(model="embedded", steps=2, prompts=2, group=2, lr=1e-3, max_new_tokens=8, enforce_eager=True,
                           gpu_memory_utilization=0.3, server_transport="http")
    extra = smoke.overrides(args, "server", tmp_path / "run", "http://127.0.0.1:9")
    cfg = load_config(ZeroConfig, None, extra)  # a valid config: engine and options as validation wants them
    assert cfg.rollout.engine == "vllm_server" and cfg.rollout.options["base_url"] == "http://127.0.0.1:9"
    good = {"server": {"gaps": [0.01, 0.02]}, "server-stale": {"gaps": [0.01, 0.3]}}
    assert smoke.verdict(good, 0.05) == []
    assert smoke.verdict({**good, "server": {"gaps": [0.01, 0.3]}}, 0.05)[0].startswith("server: log-prob gap 0.3000")
    assert "server-stale" in smoke.verdict({**good, "server-stale": {"gaps": [0.01, 0.02]}}, 0.05)[0]
