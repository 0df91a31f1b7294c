"""`aha eval`: a model, a run or an endpoint scored as DeepSeek-R1 reports it.

k samples per problem at T 0.6, top-p 0.95 (the paper's defaults); pass@1 is the mean correctness
over all k·N samples, with a 95 % percentile-bootstrap interval over problems
(`aha.algo.intervals`); cons@k is the majority answer's correctness; pass@k' for every k' ≤ k is
the unbiased estimator over each problem's k samples. A sample is correct when its accuracy
reward is 1 (every test passed, for partial-credit tasks). Everything is seeded: the same target,
settings and seed give the same records and numbers (on the same machine and thread count).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aha import runs
from aha.algo.intervals import bootstrap_ci
from aha.algo.passk import pass_at_k
from aha.rollout import SamplingParams, make_engine
from aha.stages.evaluate import evaluate
from aha.tasks import get_task
from aha.template import check_template, parse_response


@dataclass(frozen=True)
class EvalSettings:
    task: str = "division"
    problems: int = 200  # from the task's held-out split
    k: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 64
    seed: int = 0  # problems, sampling noise and the bootstrap's draws
    template: str = "r1-zero"
    resamples: int = 2000  # bootstrap resamples
    max_batch: int = 256

    def validate(self) -> None:
        for name in ("problems", "k", "max_new_tokens", "resamples", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.seed < 0:
            raise ValueError("need temperature >= 0, top_p in (0, 1] and seed >= 0")
        check_template(self.template)
        get_task(self.task)  # unknown task: KeyError listing the valid ones


def open_target(target: str, tokenizer_dir: str | None = None, max_batch: int = 256):
    """(engine, tokenizer, name) for a model directory, a run directory, "embedded", or an
    OpenAI-compatible base URL (then `tokenizer_dir`, default the embedded model, maps ids to text)."""
    from aha.config import ModelConfig, PretrainConfig, TaskConfig
    from aha.models.loading import load_model_dir, load_tokenizer
    from aha.stages.pretrain import base_model_dir
    from aha.runs import model_dir_of

    def local(path: str) -> Path:
        if path == "embedded":
            return base_model_dir(ModelConfig(), PretrainConfig(), TaskConfig())
        return model_dir_of(Path(path))

    if target.startswith(("http://", "https://")):
        tokenizer = load_tokenizer(local(tokenizer_dir or "embedded"))
        engine = make_engine("openai", None, tokenizer, base_url=target)
        return engine, tokenizer, f"{engine.model_name} @ {target}"
    model_dir = local(target)
    model, tokenizer = load_model_dir(model_dir)
    return make_engine("torch", model, tokenizer, max_batch=max_batch), tokenizer, str(model_dir)


def run(target: str, settings: EvalSettings, out_dir: Path | None = None, tokenizer_dir: str | None = None) -> dict:
    """Evaluate; write `records.jsonl` (one row per sample) and `eval.json` under `out_dir`."""
    from aha.models.loading import stop_token_ids

    settings.validate()
    engine, tokenizer, name = open_target(target, tokenizer_dir, settings.max_batch)
    task = get_task(settings.task)
    problems = task.problems("test", settings.problems, seed=settings.seed)
    params = SamplingParams(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                            top_p=settings.top_p, stop_token_ids=stop_token_ids(tokenizer), seed=settings.seed)
    start = time.time()
    result = evaluate(engine, tokenizer, task, problems, settings.k, params, settings.template)
    report = summarize(result.details, settings)
    report.update(model=name, format_rate=result.format_rate, response_length_mean=result.response_length_mean,
                  tokens_generated=result.tokens_generated, seconds=time.time() - start, settings=asdict(settings))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "records.jsonl").write_text("".join(runs.json_line(r) for r in _records(result, settings)))
        runs.write_json(out_dir / "eval.json", report)
    return report


def summarize(details: list[dict], settings: EvalSettings) -> dict:
    """The paper's numbers from per-problem verdicts (`EvalResult.details`)."""
    k = settings.k
    details = [d for d in details if d.get("kind") != "general"]  # no right answer to count
    correct = [sum(1 for a in d["accuracy"] if a >= 1.0) for d in details]
    shares = [c / k for c in correct]
    low, high = bootstrap_ci(shares, settings.resamples, seed=settings.seed)
    return {
        "task": settings.task, "problems": len(details), "k": k,
        "pass@1": float(np.mean(shares)), "pass@1_ci95": [low, high],
        f"cons@{k}": float(np.mean([d["voted_correct"] >= 1.0 for d in details])),
        "pass@k": {str(j): float(np.mean([pass_at_k(k, c, j) for c in correct])) for j in range(1, k + 1)},
    }


def _records(result, settings: EvalSettings) -> list[dict]:
    rows = []
    for (problem, group), detail in zip(result.completions, result.details):
        for sample, (completion, accuracy, fmt) in enumerate(zip(group, detail["accuracy"], detail["format"])):
            rows.append({
                "prompt_id": f"{settings.task}:{problem.id}", "sample": sample, "question": problem.question,
                "reference": problem.answer, "completion": completion.text,
                "answer": parse_response(completion.text, completion.truncated).answer,
                "correct": accuracy is not None and accuracy >= 1.0, "accuracy": accuracy, "format": fmt,
                "finish_reason": completion.finish_reason, "length": len(completion.ids),
                "voted": detail["voted"], "seed": settings.seed,
            })
    return rows
