"""`aha serve`: an OpenAI-compatible HTTP server over aha's decode loop (FastAPI + uvicorn).

`app` holds the routes, `batcher` the step-level batching of concurrent requests, `sampler` the
per-row, batch-independent sampling, `text` detokenization, stop strings and the reasoning split.
FastAPI and uvicorn are the `serve` extra: `pip install 'aha-rl[serve]'`.
"""

from __future__ import annotations

import threading
from pathlib import Path


def load_server(model_or_run: str, name: str | None = None, max_batch: int = 64,
                reasoning_parser: str | None = None, precision: str = "fp32", collect_s: float = 0.005,
                max_cohorts: int = 4):
    """A `Server` for a model directory, a run directory (its final model or latest checkpoint), or
    "embedded" (the shipped base model)."""
    from aha.config import ModelConfig, PretrainConfig, TaskConfig
    from aha.models.loading import load_model_dir
    from aha.serve.app import Server
    from aha.stages.pretrain import base_model_dir
    from aha.runs import model_dir_of

    if model_or_run == "embedded":
        path = base_model_dir(ModelConfig(), PretrainConfig(), TaskConfig())
    else:
        path = model_dir_of(Path(model_or_run))
    model, tokenizer = load_model_dir(path)
    return Server(model, tokenizer, name or str(model_or_run), max_batch=max_batch,
                  reasoning_parser=reasoning_parser, bf16=precision == "bf16-mixed", collect_s=collect_s,
                  max_cohorts=max_cohorts)


class ServerThread:
    """uvicorn serving `app` from a background thread (tests, benchmarks, notebooks); port 0 picks
    a free one. Use as a context manager; `url` is the base URL with /v1."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="aha-serve-http", daemon=True)
        self.host = host

    def __enter__(self) -> "ServerThread":
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
