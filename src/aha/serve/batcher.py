"""Batching concurrent requests into the decode loop: cohorts stepped in turn.

Requests are queued as `Job`s. A worker thread takes every job waiting (up to `max_batch` rows),
prefills them together as a cohort and decodes it a token per turn. Requests that arrive while
cohorts decode form a new cohort at the next turn (up to `max_cohorts` at once; then they wait),
so a late request waits one step of each running cohort, not for them to finish — the gain of
continuous batching in time to first token, without merging caches of different lengths (the
fused decode kernel has no per-row mask over generated columns), at the cost of a per-step
overhead for each extra cohort. Within a cohort every row keeps its own temperature, top-p, token
limit, stop ids and noise stream (`aha.serve.sampler`), so a seeded request's tokens do not depend
on its batch mates. Rows leave as they finish — or at the next step after their client cancels
them (a disconnect, a stop string seen), which frees the slot's compute at once.

Why not reuse `RolloutEngine.generate`: it returns only when the whole call is done (no streaming),
seeds one noise stream per call, and gives every prompt the same settings. The decode backends
(the lean static-cache forward, or the module's own forward) are the engine's own.
"""

from __future__ import annotations

import collections
import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from aha.rollout import lean_qwen2
from aha.rollout.base import left_pad
from aha.serve.sampler import row_uniforms, sample_rows

# A step's tokens for one job: [(sample index, token id, finish reason or None)].
Step = list[tuple[int, int, "str | None"]]


@dataclass(eq=False)
class Job:
    """One request: `n` samples of one prompt. `sink` is called from the worker thread with each
    step's tokens, then with an exception if the batch failed."""

    prompt: list[int]
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop_ids: frozenset[int]
    sink: Callable[[Step | BaseException], None]
    cancelled: set = field(default_factory=set)  # sample indices the client no longer wants
    generated: int = 0  # tokens decoded for this job so far (all samples)

    def cancel(self, sample: int | None = None) -> None:
        """Stop decoding one sample (or all): its row leaves the batch at the next step."""
        self.cancelled.update(range(self.n) if sample is None else (sample,))

    @property
    def done(self) -> bool:
        return len(self.cancelled) >= self.n


class Batcher:
    def __init__(self, model, tokenizer, max_batch: int = 64, bf16: bool = False, collect_s: float = 0.005,
                 max_cohorts: int = 4):
        self.model = model.eval()
        self.pad_id = tokenizer.pad_token_id
        self.max_batch = max_batch  # rows of one cohort
        self.max_cohorts = max_cohorts  # cohorts decoding at once (1 = one batch at a time)
        self.collect_s = collect_s  # when idle, wait this long after an arrival for others to join it
        self.device = next(model.parameters()).device
        # Weights do not change while serving: snapshot the lean forward's fused weights once (each
        # cohort decodes with a shallow copy: the weights shared, its own cache).
        self.lean = lean_qwen2.LeanDecoder(model, torch.bfloat16 if bf16 else None) if lean_qwen2.supports(model) else None
        self.bf16 = bf16
        self.pending: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition()
        self.closing = False
        self.stats = {"batches": 0, "rows": 0, "tokens": 0, "largest_batch": 0, "active_rows": 0}
        self.thread = threading.Thread(target=self._loop, name="aha-serve-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        if job.n > self.max_batch:
            raise ValueError(f"n={job.n} exceeds the server's batch of {self.max_batch} rows")
        with self.cond:
            if self.closing:
                raise RuntimeError("the server is shutting down")
            self.pending.append(job)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        """Cohorts are stepped in turn, one token each: a request arriving while others decode
        starts in a cohort of its own at the next turn instead of waiting for them to finish."""
        cohorts: list[_Cohort] = []
        while True:
            with self.cond:
                while not self.pending and not cohorts and not self.closing:
                    self.cond.wait()
                if self.closing:
                    return
                waiting = bool(self.pending)
            if waiting and len(cohorts) < self.max_cohorts:
                if not cohorts:
                    time.sleep(self.collect_s)
                batch = self._take()
                if batch:
                    cohort = _guarded(lambda: _Cohort(self, batch), batch)
                    cohorts += [cohort] if cohort is not None else []
            cohorts = [c for c in cohorts if _guarded(c.step, c.jobs)]
            self.stats["active_rows"] = sum(len(c.alive) for c in cohorts)

    def _take(self) -> list[Job]:
        """Jobs in arrival order while their rows fit; jobs cancelled while queued are dropped."""
        batch, rows = [], 0
        with self.cond:
            while self.pending and (not batch or rows + self.pending[0].n <= self.max_batch):
                job = self.pending.popleft()
                if not job.done:
                    batch.append(job)
                    rows += job.n
        return batch


def _guarded(call, jobs: list[Job]):
    """`call()`, or None after telling the jobs' clients why it failed (the server keeps serving)."""
    try:
        return call()
    except (RuntimeError, ValueError, IndexError, MemoryError) as err:
        for job in jobs:
            job.sink(err)
        return None


class _Cohort:
    """Jobs prefilled together and decoded together, a token per `step`, rows leaving as they end."""

    @torch.no_grad()
    def __init__(self, batcher: Batcher, jobs: list[Job]):
        self.jobs, self.device, self.stats = jobs, batcher.device, batcher.stats
        self.rows = [(job, j) for job in jobs for j in range(job.n)]  # each sample its own row (n = 1 below)
        ids, mask = left_pad([job.prompt for job, _ in self.rows], batcher.pad_id, self.device)
        self.backend = (copy.copy(batcher.lean) if batcher.lean is not None
                        else _module_backend(batcher.model, batcher.bf16))
        self.logits = self.backend.prefill(ids, mask, 1, max(job.max_tokens for job in jobs))
        self.alive = list(range(len(self.rows)))
        self.t = 0
        self.temps = torch.tensor([job.temperature for job, _ in self.rows], device=self.device)
        self.top_ps = torch.tensor([job.top_p for job, _ in self.rows], device=self.device)
        self.seeds = np.array([job.seed for job, _ in self.rows], dtype=np.uint64)
        self.samples = np.array([j for _, j in self.rows], dtype=np.uint64)
        self.stats.update(batches=self.stats["batches"] + 1, rows=self.stats["rows"] + len(self.rows),
                          largest_batch=max(self.stats["largest_batch"], len(self.rows)))

    @torch.no_grad()
    def step(self) -> bool:
        """Sample one token per live row, hand them out, decode on; False once no row is left."""
        alive = self.alive
        u = torch.from_numpy(row_uniforms(self.seeds[alive], self.samples[alive], self.t))
        tokens = sample_rows(self.logits, self.temps[alive], self.top_ps[alive], u).tolist()
        keep = _emit(self.rows, alive, tokens, self.t)
        self.stats["tokens"] += len(alive)
        self.t += 1
        if not keep:
            self.alive = []
            return False
        if len(keep) < len(alive):  # finished and cancelled rows leave: their compute is freed
            self.backend.select(torch.tensor(keep, device=self.device))
            self.alive = [alive[p] for p in keep]
        self.logits = self.backend.step(torch.tensor([tokens[p] for p in keep], device=self.device))
        return True


def _emit(rows, alive: list[int], tokens: list[int], t: int) -> list[int]:
    """Hand each job its rows' tokens; the positions (in `alive`) of rows that decode on."""
    keep, steps = [], collections.defaultdict(list)
    for pos, (row, token) in enumerate(zip(alive, tokens)):
        job, sample = rows[row]
        if sample in job.cancelled:
            continue
        finish = "stop" if token in job.stop_ids else "length" if t + 1 >= job.max_tokens else None
        steps[job].append((sample, token, finish))
        job.generated += 1
        if finish is None:
            keep.append(pos)
    for job, step in steps.items():
        job.sink(step)
    return keep


def _module_backend(model, bf16: bool):
    # The engine's fallback for architectures the lean forward does not take (private there; one
    # place defines how a transformers model decodes with a cache).
    from aha.rollout.torch_engine import _ModuleBackend

    return _ModuleBackend(model, bf16)
