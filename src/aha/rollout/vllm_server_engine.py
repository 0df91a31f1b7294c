"""Rollouts from aha's vLLM server on other GPUs (`rollout.engine=vllm_server`; TRL's "server" mode).

The trainer starts nothing: a server started with `aha vllm-serve MODEL` (`aha.rollout.vllm_server`)
samples over HTTP, and after every update this engine pushes the policy's weights into the server's
vLLM workers — over NCCL (`weight_transport=nccl`, the default: the trainer joins a group with the
server's workers and broadcasts each tensor), or as one safetensors body over HTTP
(`weight_transport=http`: trainer and server on one GPU, where NCCL refuses two ranks on a device, or
a trainer without CUDA). The same contract as the other engines (`aha.rollout.base`): token ids in,
ids / sampled log-probs (vLLM's processed ones, as the colocated engine) / finish reasons out, one
seed per prompt keyed by its row in the step.

Against stale weights (peer bugs: rollouts from the starting weights after a sleep or a failed sync):
- the first generate pushes the policy's weights: a server reused from an earlier run, or a resumed
  trainer, never samples what the server loaded from disk;
- the server resets its prefix cache before it counts an update done (`weights_version`), and each
  generate names the version it needs: the server waits for it, and the response's version is checked;
- with several trainer processes only rank 0 pushes; every rank counts the updates, so a rank's
  generate waits until rank 0's push has landed.

Against NCCL hangs: the tensors are announced (name, dtype, shape) in one request before they are
broadcast, so both sides agree on every transfer; the server keeps receiving after a tensor fails to
load; the group's rendezvous is bounded by `sync_timeout` on both sides, and so is each update.

An unreachable server is a `ServerUnreachable` (a ValueError: the CLI prints it, no traceback) naming
the URL, after a bounded wait for `/health` at start-up (`startup_timeout`). The HTTP side is tested
on CPU against the real server app over a torch stand-in for vLLM; NCCL and vLLM are NOT run here.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from urllib.parse import urlsplit

from aha.rollout.base import Completion, RolloutEngine, SamplingParams
from aha.rollout.vllm_engine import (completion_from_sample, prompt_seeds, refuse_empty_prompts, stop_set,
                                     vllm_weights)

TRANSPORTS = ("nccl", "http")
WHO = "vllm_server engine"


class ServerUnreachable(ValueError):
    """No aha vLLM server answers at the configured URL (a setup error, reported without a traceback)."""


class VLLMServerEngine(RolloutEngine):
    def __init__(self, model, tokenizer, *, base_url: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                 group_port: int = 51216, timeout: float = 600.0, startup_timeout: float = 120.0,
                 sync_timeout: float = 300.0, weight_transport: str = "nccl", device: str | None = None,
                 max_batch: int = 0, bf16: bool = False, client=None, communicator=None, rank: int | None = None):
        """`model`: the policy module (its weights are pushed before the first generate). `base_url`
        (or host + port): the server. `group_port`: where the server's workers listen for the NCCL
        group. `timeout`: seconds per generate request; `startup_timeout`: how long to wait for the
        server's /health; `sync_timeout`: bound on forming the group and on each weight update.
        `device`: the trainer's CUDA device for the NCCL transfer (default: the current one).
        `max_batch`, `bf16`: unused (the server batches, and runs its own dtype). `client` (an
        httpx.Client), `communicator` (as `vllm_worker.nccl_group`), `rank`: injected by tests."""
        import httpx

        if weight_transport not in TRANSPORTS:
            raise ValueError(f"{WHO}: weight_transport must be one of {', '.join(TRANSPORTS)}, got {weight_transport!r}")
        self.policy, self.tokenizer, self.transport = model, tokenizer, weight_transport
        self.url = (base_url or f"http://{host}:{port}").rstrip("/")
        self.group_port, self.timeout, self.sync_timeout, self.device = group_port, timeout, sync_timeout, device
        self.client = client or httpx.Client(base_url=self.url, timeout=timeout)
        self.rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        self._communicator, self._comm = communicator, None
        self.server = self._wait_for_server(startup_timeout)
        # Updates the server has completed that this trainer counts on; rank 0's count is the truth.
        self._expected = _rank0_value(self.server["weights_version"])
        self._synced = False

    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> list[Completion]:
        if not prompts:
            return []
        refuse_empty_prompts(prompts, WHO)
        if not self._synced and self.policy is not None:
            self.load_weights(self.policy.state_dict())  # never sample what the server loaded from disk
        stops = stop_set(params, self.tokenizer.eos_token_id)
        payload = {"prompts": [list(p) for p in prompts], "seeds": prompt_seeds(params, n, len(prompts)),
                   "n": n, "temperature": params.temperature, "top_p": params.top_p,
                   "max_tokens": params.max_new_tokens, "stop_token_ids": sorted(stops),
                   "ignore_eos": params.ignore_eos, "min_weights_version": self._expected}
        reply = self._request("POST", "/generate", json=payload, timeout=self.timeout)
        if reply["weights_version"] < self._expected:
            raise RuntimeError(f"{WHO}: the server sampled with weights_version {reply['weights_version']}, "
                               f"older than the trainer's {self._expected} (stale weights)")
        return completions_from_reply(reply["outputs"], len(prompts), n, self.tokenizer, stops)

    def load_weights(self, state_dict) -> None:
        """Push the trainer's weights (names as vLLM's loaders read them; merged LoRA weights, see
        `vllm_engine.vllm_weights`). Ranks other than 0 only count the update rank 0 makes."""
        self._synced = True
        self._expected += 1
        if self.rank != 0:
            return
        weights = vllm_weights(state_dict)
        if not weights:
            raise ValueError(f"{WHO}: no weights to send (an empty state dict, or adapters without their base)")
        try:
            version = self._push_nccl(weights) if self.transport == "nccl" else self._push_http(weights)
        except Exception:
            self._expected -= 1  # the push did not land: the next generate must not wait for it
            self._synced = False  # … and pushes again first
            raise
        if version < self._expected:
            raise RuntimeError(f"{WHO}: the server reports weights_version {version} after the update, expected "
                               f"≥ {self._expected}")
        self._expected = version

    def close(self) -> None:
        """Leave the NCCL group (the server keeps running, ready for the next trainer)."""
        if self._comm is not None:
            self._comm = None
            try:
                self._request("POST", "/weights/close", timeout=30)
            except (ServerUnreachable, RuntimeError):
                pass  # the server is gone or busy: nothing left to close on this side

    # --- transfer ---------------------------------------------------------------------------------

    def _push_http(self, weights: list) -> int:
        from safetensors.torch import save

        seen, body = set(), {}
        for name, tensor in weights:
            tensor = self._cast(tensor)
            if tensor.data_ptr() in seen:  # tied embeddings: safetensors refuses tensors sharing storage
                tensor = tensor.clone()
            seen.add(tensor.data_ptr())
            body[name] = tensor
        reply = self._request("POST", "/weights/load", content=save(body), timeout=self.sync_timeout,
                              headers={"content-type": "application/octet-stream"})
        return reply["weights_version"]

    def _push_nccl(self, weights: list) -> int:
        import torch

        if self._comm is None:
            self._join_group()
        dtype = self._server_dtype()
        announced = [[name, str(dtype if dtype is not None and t.is_floating_point() else t.dtype).removeprefix("torch."),
                      list(t.shape)] for name, t in weights]
        self._request("POST", "/weights/update", json={"tensors": announced, "timeout": self.sync_timeout},
                      timeout=60)
        device = torch.device(self.device) if self.device else torch.device("cuda", torch.cuda.current_device())
        for _, tensor in weights:  # in the announced order: the server's workers receive in it
            self._comm.broadcast(self._cast(tensor).to(device).contiguous(), src=self._group_rank)
        # The server's answer first: it comes once every broadcast was received, so the wait below
        # cannot hang on a server that stopped receiving (that is a clear error from /weights/wait).
        version = self._wait_job("update")["weights_version"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return version

    def _join_group(self) -> None:
        """Form the NCCL group with the server's workers (ranks 0…tp-1; this trainer is the last)."""
        world = self.server["tensor_parallel_size"] + 1
        self._group_rank = world - 1
        self._request("POST", "/weights/init", timeout=60, json={"host": "0.0.0.0", "port": self.group_port,
                                                                 "world_size": world, "timeout": self.sync_timeout})
        make = self._communicator or _nccl_group
        host = urlsplit(self.url).hostname or "127.0.0.1"
        box: dict = {}

        def join():
            try:
                box["comm"] = make(host, self.group_port, world - 1, world, self.device, self.sync_timeout)
            except Exception as err:  # reported below, after the server's side of the story
                box["error"] = err

        thread = threading.Thread(target=join, name="aha-nccl-join", daemon=True)  # daemon: a hang cannot pin exit
        thread.start()
        thread.join(self.sync_timeout * 1.1 + 1)  # the store's own timeout first
        try:
            self._request("POST", "/weights/wait", json={"timeout": self.sync_timeout}, timeout=self.sync_timeout + 30)
            server_side = ""
        except RuntimeError as err:
            server_side = str(err).removeprefix(f"{WHO}: ")
        if thread.is_alive() or "error" in box or server_side:
            why = ("timed out" if thread.is_alive() else f"{type(box['error']).__name__}: {box['error']}"
                   if "error" in box else "the server's side failed")
            raise RuntimeError(f"{WHO}: the NCCL weight group (trainer → {host}:{self.group_port}, world size {world}) "
                               f"did not form within {self.sync_timeout:g} s: {why}"
                               f"{'; server: ' + server_side if server_side else ''}. Is group_port free and reachable, "
                               "and the trainer on another GPU than the server (else weight_transport=http)?")
        self._comm = box["comm"]
        atexit.register(self.close)

    def _wait_job(self, job: str) -> dict:
        """The server's background weight job (init or update), waited for at most sync_timeout."""
        try:
            return self._request("POST", "/weights/wait", json={"timeout": self.sync_timeout},
                                 timeout=self.sync_timeout + 30)
        except RuntimeError as err:
            raise RuntimeError(f"{WHO}: weight {job} failed on the server: {err}") from None

    def _server_dtype(self):
        import torch

        return getattr(torch, self.server.get("dtype", ""), None)

    def _cast(self, tensor):
        """In the server's dtype: half the bytes of fp32 master weights to a bf16 server."""
        dtype = self._server_dtype()
        return (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).contiguous()

    # --- HTTP ---------------------------------------------------------------------------------------

    def _wait_for_server(self, startup_timeout: float) -> dict:
        deadline, last = time.monotonic() + startup_timeout, None
        while True:
            try:
                if self.client.get("/health", timeout=min(10.0, max(startup_timeout, 0.1))).status_code == 200:
                    break
                last = "not ready"
            except Exception as err:  # httpx's connect/read errors: the server is not (yet) there
                last = f"{type(err).__name__}: {err}"
            if time.monotonic() >= deadline:
                raise ServerUnreachable(
                    f"{WHO}: no aha vLLM server answered at {self.url}/health within {startup_timeout:g} s ({last}). "
                    f"Start one on the rollout GPUs (`CUDA_VISIBLE_DEVICES=1 aha vllm-serve MODEL --port "
                    f"{urlsplit(self.url).port or 8000}`), or point rollout.options.base_url at it")
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
        info = self._request("GET", "/info")
        from aha.rollout.vllm_server import PROTOCOL

        if info.get("protocol") != PROTOCOL:
            raise ServerUnreachable(f"{WHO}: {self.url} is not an aha vLLM server of protocol {PROTOCOL} "
                                    f"(/info says {info}); start it with `aha vllm-serve`")
        return info

    def _request(self, method: str, path: str, **kwargs) -> dict:
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ServerUnreachable(f"{WHO}: {method} {self.url}{path} failed ({type(err).__name__}: {err}); "
                                    "is `aha vllm-serve` still running there?") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise RuntimeError(f"{WHO}: {method} {path} → {response.status_code}: {detail}")
        return response.json()


def completions_from_reply(outputs: list, n_prompts: int, n: int, tokenizer, stops: set[int]) -> list[Completion]:
    """The server's samples (per prompt, n each) → aha Completions grouped by prompt."""
    if len(outputs) != n_prompts:
        raise RuntimeError(f"{WHO}: sent {n_prompts} prompts, the server answered {len(outputs)}")
    completions = []
    for prompt_index, samples in enumerate(outputs):
        if len(samples) != n:
            raise RuntimeError(f"{WHO}: asked for n={n} samples of prompt {prompt_index}, got {len(samples)}")
        completions += [completion_from_sample(prompt_index, s["token_ids"], s["logprobs"], s["finish_reason"],
                                               tokenizer, stops, who=WHO) for s in samples]
    return completions


def _rank0_value(value: int) -> int:
    """`value` as rank 0 has it, when this process is one of several (torch.distributed is up)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def _nccl_group(host, port, rank, world_size, device, timeout):
    import torch

    from aha.rollout.vllm_worker import nccl_group

    return nccl_group(host, port, rank, world_size, torch.device(device) if device else torch.device(
        "cuda", torch.cuda.current_device()), timeout)
