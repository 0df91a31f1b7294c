"""aha's vLLM rollout server: vLLM on its own GPUs, sampling for a trainer elsewhere (TRL's "server"
mode), started by `aha vllm-serve MODEL` or `python -m aha.rollout.vllm_server MODEL`.

HTTP (FastAPI) carries generation and the control of weight updates; the weights themselves go over
NCCL from the trainer straight into vLLM's workers (aha's worker extension, `aha.rollout.vllm_worker`,
called on every worker by `LLM.collective_rpc`), or as a safetensors body over HTTP where NCCL cannot
run (trainer and server on one GPU, or a trainer without CUDA). The client is
`aha.rollout.vllm_server_engine` (`rollout.engine=vllm_server`).

    GET  /health                 200 once vLLM is up
    GET  /info                   model, tensor_parallel_size, dtype, max_model_len, weights_version
    POST /generate               token-id prompts, one seed per prompt → ids, sampled log-probs, finish
    POST /weights/init           join the trainer's NCCL group (runs in the background; then /weights/wait)
    POST /weights/update         receive the announced tensors over NCCL (background; then /weights/wait)
    POST /weights/wait           the background job's result, waiting at most `timeout` seconds
    POST /weights/load           a safetensors body: load it (the transport without NCCL)
    POST /weights/close          leave the NCCL group

How it keeps rollouts on the trainer's current weights: an update holds the engine from the first
tensor until the prefix cache is reset — no generate runs on half-loaded weights, and no prompt
prefix computed by the old weights is reused — and only then raises `weights_version`. A generate
request names the version it needs (`min_weights_version`) and waits for it, so ranks of a trainer
other than the one pushing cannot sample before the push lands; every response says which version
sampled it. vLLM's parts are written against its API (0.16–0.25) and NOT run here (no GPU); the
HTTP server, its ordering and its errors are tested on CPU with a torch backend standing in for vLLM.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, whose request
# models are defined inside `create_app`, at run time.
import argparse
import os
import tempfile
import threading
from dataclasses import dataclass, field

PROTOCOL = 1
DTYPES = ("auto", "bfloat16", "float16", "float32")


class Refused(Exception):
    """A request the server answers with an HTTP error status and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    name: str
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: str | None = None


class WeightServer:
    """The server's state around one generation backend: one caller at a time on the engine, the
    weights version, and at most one weight job (init/update) running in the background."""

    def __init__(self, backend, version_wait: float = 120.0):
        self.backend, self.version_wait = backend, version_wait
        self.engine = threading.Lock()  # vLLM's LLM serves one caller at a time
        self.changed = threading.Condition()
        self.version = 0  # weight updates completed (loaded and prefix cache reset)
        self.job: _Job | None = None

    def info(self) -> dict:
        return {**self.backend.info(), "weights_version": self.version, "protocol": PROTOCOL}

    def generate(self, prompts: list[list[int]], sampling: list[dict], min_version: int) -> dict:
        with self.changed:
            if not self.changed.wait_for(lambda: self.version >= min_version, timeout=self.version_wait):
                raise Refused(409, f"weights_version {self.version} < {min_version} after {self.version_wait:g} s: "
                                   "the trainer's last weight update has not reached this server")
        with self.engine:
            return {"weights_version": self.version, "outputs": self.backend.generate(prompts, sampling)}

    def start_job(self, name: str, work) -> dict:
        """Run `work()` in the background holding the engine (the trainer's NCCL side runs meanwhile)."""
        if self.job is not None and not self.job.done.is_set():
            raise Refused(409, f"a weight job ({self.job.name}) is still running; POST /weights/wait first")
        self.engine.acquire()  # after the generate in flight, if any
        job = self.job = _Job(name)

        def run():
            try:
                job.result = work()
            except Exception as err:  # reported by /weights/wait
                job.error = f"{type(err).__name__}: {err}"
            finally:
                self.engine.release()
                job.done.set()

        threading.Thread(target=run, name=f"aha-weights-{name}", daemon=True).start()
        return {"job": name, "status": "started"}

    def wait_job(self, timeout: float) -> dict:
        job = self.job
        if job is None:
            raise Refused(409, "no weight job was started")
        if not job.done.wait(timeout):
            raise Refused(504, f"weight job {job.name} still running after {timeout:g} s (did the trainer join the "
                               "NCCL group / send every announced tensor?)")
        if job.error:
            raise Refused(500, f"weight job {job.name} failed: {job.error}")
        return {"job": job.name, "result": job.result, "weights_version": self.version}

    def init_sync(self, host: str, port: int, world_size: int, timeout: float) -> dict:
        expected = self.backend.info()["tensor_parallel_size"] + 1
        if world_size != expected:
            raise Refused(400, f"world_size {world_size}: this server's group has {expected - 1} vLLM workers + "
                               f"the trainer = {expected}")
        return self.start_job("init", lambda: self.backend.rpc("init_weight_sync", (host, port, world_size, timeout),
                                                               timeout))

    def update(self, tensors: list, timeout: float) -> dict:
        def work():
            self.backend.rpc("update_weights", (tensors,), timeout)
            return self._loaded()

        return self.start_job("update", work)

    def load_file_bytes(self, body: bytes) -> dict:
        if not body:
            raise Refused(400, "empty body: expected a safetensors file of the weights")
        with tempfile.TemporaryDirectory(prefix="aha-weights-") as tmp, self.engine:
            path = os.path.join(tmp, "weights.safetensors")
            with open(path, "wb") as f:
                f.write(body)
            try:
                self.backend.rpc("load_weights_file", (path,), None)
                return {"weights_version": self._loaded()}
            except Exception as err:  # the trainer gets vLLM's reason, not a bare 500
                raise Refused(500, f"loading the weights failed: {type(err).__name__}: {err}") from err

    def _loaded(self) -> int:
        """After the weights are in (the engine held): reset the prefix cache, then raise the version."""
        if self.backend.reset_prefix_cache() is False:
            raise RuntimeError("vLLM refused to reset its prefix cache; prompt prefixes computed by the old "
                               "weights would be reused")
        with self.changed:
            self.version += 1
            self.changed.notify_all()
            return self.version

    def close_sync(self) -> dict:
        with self.engine:
            self.backend.rpc("close_weight_sync", (), None)
        return {"status": "closed"}


def _request_models():
    """The request bodies, as pydantic models (imported here: FastAPI is needed only to serve)."""
    from pydantic import BaseModel, Field

    class Sampling(BaseModel):
        n: int = Field(1, ge=1)
        temperature: float = Field(1.0, ge=0)
        top_p: float = Field(1.0, gt=0, le=1)
        max_tokens: int = Field(64, ge=1)
        stop_token_ids: list[int] = []
        ignore_eos: bool = False

    class GenerateRequest(Sampling):
        prompts: list[list[int]] = Field(min_length=1)
        seeds: list[int]  # one per prompt: each prompt's noise whatever else is batched with it
        min_weights_version: int = 0

    class InitRequest(BaseModel):
        host: str
        port: int = Field(ge=1, le=65535)
        world_size: int = Field(ge=2)
        timeout: float = Field(120.0, gt=0)

    class UpdateRequest(BaseModel):
        tensors: list[tuple[str, str, list[int]]] = Field(min_length=1)  # (vLLM name, torch dtype name, shape)
        timeout: float = Field(300.0, gt=0)

    class WaitRequest(BaseModel):
        timeout: float = Field(300.0, gt=0)

    return Sampling, GenerateRequest, InitRequest, UpdateRequest, WaitRequest


def create_app(server: WeightServer):
    """The FastAPI app over a `WeightServer` (any backend: vLLM's, or a stand-in in tests)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    Sampling, GenerateRequest, InitRequest, UpdateRequest, WaitRequest = _request_models()
    app = FastAPI(title="aha vLLM rollout server")

    @app.exception_handler(Refused)
    async def refused(_request, err: Refused):
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/info")
    def info():
        return server.info()

    @app.post("/generate")
    def generate(r: GenerateRequest):
        if len(r.seeds) != len(r.prompts) or not all(r.prompts):
            raise Refused(422, f"need one seed per prompt ({len(r.prompts)} prompts, {len(r.seeds)} seeds) "
                               "and no empty prompt")
        shared = r.model_dump(include=set(Sampling.model_fields))
        return server.generate(r.prompts, [{**shared, "seed": s} for s in r.seeds], r.min_weights_version)

    @app.post("/weights/init", status_code=202)
    def init(r: InitRequest):
        return server.init_sync(r.host, r.port, r.world_size, r.timeout)

    @app.post("/weights/update", status_code=202)
    def update(r: UpdateRequest):
        return server.update([list(t) for t in r.tensors], r.timeout)

    @app.post("/weights/wait")
    def wait(r: WaitRequest):
        return server.wait_job(r.timeout)

    @app.post("/weights/load")
    async def load(request: Request):
        return await run_in_threadpool(server.load_file_bytes, await request.body())

    @app.post("/weights/close")
    def close():
        return server.close_sync()

    return app


class VLLMBackend:
    """`vllm.LLM` with aha's worker extension, as `WeightServer` drives it. Prompts are token ids and
    aha's client decodes (vLLM loads no tokenizer); log-probs are vLLM's processed ones (after the
    temperature), the distribution the trainer scores — as the colocated engine (`vllm_engine`)."""

    def __init__(self, model: str, tensor_parallel_size: int = 1, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, enforce_eager: bool = False,
                 max_batch: int = 256, enable_prefix_caching: bool = True):
        from aha.rollout import vllm_unavailable
        from aha.rollout.vllm_worker import EXTENSION

        reason = vllm_unavailable()
        if reason:
            raise ImportError(f"aha vllm-serve needs `pip install 'aha-rl[vllm]'` and a CUDA GPU ({reason})")
        import vllm

        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # CUDA cannot start in forked workers
        self.model, self.tensor_parallel_size = model, tensor_parallel_size
        self.llm = vllm.LLM(
            model=model, tensor_parallel_size=tensor_parallel_size, dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, enforce_eager=enforce_eager,
            max_num_seqs=max_batch, enable_prefix_caching=enable_prefix_caching, worker_extension_cls=EXTENSION,
            logprobs_mode="processed_logprobs", generation_config="vllm", skip_tokenizer_init=True)
        self.params_cls = vllm.SamplingParams
        model_config = self.llm.llm_engine.model_config
        self.dtype = str(model_config.dtype).removeprefix("torch.")
        self.max_model_len = model_config.max_model_len

    def info(self) -> dict:
        return {"model": self.model, "tensor_parallel_size": self.tensor_parallel_size, "dtype": self.dtype,
                "max_model_len": self.max_model_len, "backend": "vllm"}

    def generate(self, prompts: list[list[int]], sampling: list[dict]) -> list[list[dict]]:
        from aha.rollout.vllm_engine import sampled_logprobs

        params = [self.params_cls(**kw, logprobs=0, detokenize=False) for kw in sampling]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [[{"token_ids": list(s.token_ids), "finish_reason": s.finish_reason,
                  "logprobs": sampled_logprobs(list(s.token_ids), s.logprobs) if s.finish_reason in ("stop", "length")
                  else []} for s in sorted(request.outputs, key=lambda s: s.index)]
                for request in outputs]

    def rpc(self, method: str, args: tuple, timeout: float | None) -> list:
        return self.llm.collective_rpc(method, timeout=timeout, args=args)

    def reset_prefix_cache(self):
        return self.llm.reset_prefix_cache()


def serve(model: str, host: str = "0.0.0.0", port: int = 8000, log_level: str = "warning", **backend_options) -> None:
    """Build vLLM (minutes for a large model), then answer on host:port until stopped."""
    import uvicorn

    if backend_options.get("dtype", "auto") not in DTYPES:
        raise ValueError(f"--dtype: expected one of {', '.join(DTYPES)}, got {backend_options['dtype']!r}")
    if not os.path.isfile(os.path.join(model, "config.json")):
        raise FileNotFoundError(f"{model}: not a Hugging Face model directory (no config.json)")
    server = WeightServer(VLLMBackend(model, **backend_options))
    print(f"aha vLLM rollout server: {model} on http://{host}:{port} "
          f"(tensor_parallel_size={server.backend.tensor_parallel_size}, dtype={server.backend.dtype})", flush=True)
    uvicorn.run(create_app(server), host=host, port=port, log_level=log_level)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m aha.rollout.vllm_server", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="Hugging Face model directory (the policy's starting weights)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--dtype", default="auto", choices=DTYPES)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--max-batch", type=int, default=256, help="vLLM's max_num_seqs")
    p.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (faster start-up)")
    args = p.parse_args(argv)
    serve(args.model, args.host, args.port, tensor_parallel_size=args.tensor_parallel_size, dtype=args.dtype,
          gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
          enforce_eager=args.enforce_eager, max_batch=args.max_batch)


if __name__ == "__main__":
    main()
