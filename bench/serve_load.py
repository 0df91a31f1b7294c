"""Load test: concurrent streaming chat clients against `aha serve` and `transformers serve`,
side by side in one run, on the same model, prompts and sampling settings.

    python bench/serve_load.py [--model DIR] [--clients 16] [--requests 4] [--max-tokens 64]

Each server is started as a subprocess on a free loopback port, warmed up with one request, then
`clients` clients each send `requests` streaming chat requests back to back (held-out division
questions, T 0.6, top-p 0.95). Reported per server: completion tokens per second over the whole
run (tokens counted by re-tokenizing each returned text with the model's own tokenizer, so both
servers are counted alike), p50/p90 time to first token (first streamed text), mean request latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, model: str, port: int, cb: bool, aha_args: list[str]) -> tuple[subprocess.Popen, str]:
    """The server process and the model id it expects."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if kind == "aha":
        cmd = [sys.executable, "-m", "aha", "serve", model, "--port", str(port), "--name", "bench", *aha_args]
        name = "bench"
    else:
        cmd = [str(Path(sys.executable).parent / "transformers"), "serve", model, "--port", str(port),
               "--host", "127.0.0.1", "--device", "cpu", *(["--continuous-batching"] if cb else [])]
        name = model
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc, name
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"{kind} server did not come up in 180 s")


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    sent = time.perf_counter()
    first, text = None, []
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                delta = choice.get("delta", {})
                piece = (delta.get("reasoning_content") or "") + (delta.get("content") or "")
                if piece:
                    first = first or time.perf_counter()
                    text.append(piece)
    end = time.perf_counter()
    return {"ttft": (first or end) - sent, "latency": end - sent, "text": "".join(text)}


async def load(port: int, name: str, questions: list[str], clients: int, requests: int, max_tokens: int,
               extra: dict) -> dict:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def body(i: int) -> dict:
        return {"model": name, "messages": [{"role": "user", "content": questions[i % len(questions)]}],
                "stream": True, "max_tokens": max_tokens, "temperature": 0.6, "top_p": 0.95, **extra}

    async with httpx.AsyncClient(timeout=600) as client:
        await one_request(client, url, body(0))  # warm-up: first-call costs are not load

        async def worker(c: int) -> list[dict]:
            return [await one_request(client, url, body(c * requests + r)) for r in range(requests)]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(c) for c in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    return {"results": results, "wall": wall}


def summarize(run: dict, tokenizer) -> dict:
    results = run["results"]
    tokens = sum(len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in results)
    ttft = np.array([r["ttft"] for r in results])
    return {"requests": len(results), "completion_tokens": tokens, "wall_s": round(run["wall"], 2),
            "tokens_per_s": round(tokens / run["wall"], 1), "ttft_p50_s": round(float(np.median(ttft)), 3),
            "ttft_p90_s": round(float(np.quantile(ttft, 0.9)), 3),
            "latency_mean_s": round(float(np.mean([r["latency"] for r in results])), 3),
            "tokens_per_request": round(tokens / len(results), 1)}


def main() -> None:
    from aha.config import PretrainConfig, TaskConfig
    from aha.models.loading import load_tokenizer, shipped_base_dir
    from aha.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(shipped_base_dir(PretrainConfig(), TaskConfig())))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="per client, back to back")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--servers", default="aha,transformers,transformers-cb")
    parser.add_argument("--aha-args", default="", help="extra `aha serve` options, e.g. '--max-cohorts 1'")
    parser.add_argument("--ignore-eos", action="store_true",
                        help="aha serve decodes every request to --max-tokens (vLLM's ignore_eos; "
                             "transformers serve has no such field)")
    args = parser.parse_args()
    tokenizer = load_tokenizer(Path(args.model))
    questions = [p.question for p in get_task("division").problems("test", args.clients * args.requests + 1, seed=0)]
    report = {"model": args.model, "clients": args.clients, "requests_per_client": args.requests,
              "max_tokens": args.max_tokens, "ignore_eos": args.ignore_eos, "aha_args": args.aha_args,
              "cpus": os.cpu_count(),
              "load_average_before": os.getloadavg(), "servers": {}}
    for kind in args.servers.split(","):
        port = free_port()
        proc, name = start(kind.split("-")[0], args.model, port, cb=kind.endswith("-cb"), aha_args=args.aha_args.split())
        try:
            extra = {"ignore_eos": True} if args.ignore_eos and kind == "aha" else {}
            run = asyncio.run(load(port, name, questions, args.clients, args.requests, args.max_tokens, extra))
            report["servers"][kind] = summarize(run, tokenizer)
        except httpx.HTTPError as err:
            report["servers"][kind] = {"error": f"{type(err).__name__}: {err}"}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(kind, report["servers"][kind], flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
