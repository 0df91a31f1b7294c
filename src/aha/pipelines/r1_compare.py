"""Every R1 stage's model on one held-out set: the figures `aha r1`'s report puts side by side.

Per model: held-out pass@1 (k samples at the paper's T 0.6 / top-p 0.95) with a bootstrap 95 %
interval over problems, cons@k, mean response length, the share of completions with a self-check
(reflection), language mixing in the chain of thought, readability (the share of completions that
`aha sample`'s `readable` filter keeps), and — when the pipeline has a reward model — its mean
score on held-out general prompts (the summary only, as the all-scenario RL is paid) beside the
general task's hidden rubric (an oracle the policy never sees: a reward model can be gamed). Plus the
stage's own cost ledger (FLOPs, tokens, wall time). Figures are cached per model in
`compare/<stage>.json`, so a resumed pipeline evaluates each model once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from aha import runs
from aha.algo.intervals import bootstrap_ci
from aha.algo.selection import unreadable_reason
from aha.events import Events
from aha.observe.cost import CostLedger
from aha.observe.metrics import behaviour_metrics

EVAL_SEED = 1  # the sampling seed GRPO's own final evaluation uses


def compare(cfg, pipeline_dir: Path, models: Mapping[str, Path], summaries: Mapping[str, dict],
            events: Events, reward_model=None) -> dict:
    """`reward_model`: the section the all-scenario RL was paid by (a model or a judge); every
    stage's answers to held-out general prompts are scored by it, and by the general task's rubric."""
    out_dir = pipeline_dir / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict] = {}
    scorer = None
    events.phase("held-out comparison", total=len(models))
    for i, (name, model_dir) in enumerate(models.items()):
        cache = out_dir / f"{name}.json"
        if cache.exists() and json.loads(cache.read_text()).get("model_dir") == str(model_dir):
            row = json.loads(cache.read_text())
        else:
            if scorer is None and reward_model is not None:
                scorer = _scorer(cfg, reward_model)
            row = {"model_dir": str(model_dir), **model_figures(cfg, Path(model_dir), scorer)}
            runs.write_json(cache, row)
        row["cost"] = stage_cost(summaries.get(name))
        figures[name] = row
        events.advance(i + 1, len(models), f"{name}: pass@1 {row['pass@1']:.3f}")
    runs.write_json(pipeline_dir / "compare.json", figures)
    return figures


def model_figures(cfg, model_dir: Path, scorer=None) -> dict:
    from aha.models.loading import load_model_dir, stop_token_ids
    from aha.rollout import SamplingParams, make_engine
    from aha.stages.evaluate import evaluate
    from aha.tasks import get_task
    from aha.train import session

    session.seed_and_threads(cfg.run)
    model, tokenizer = load_model_dir(model_dir, cfg.model.dtype)
    engine = make_engine(cfg.rollout.engine, model, tokenizer, max_batch=cfg.rollout.max_batch, bf16=cfg.model.bf16)
    task = get_task(cfg.task.name, **cfg.task.options)
    e = cfg.eval
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=e.temperature, top_p=e.top_p,
                            stop_token_ids=stop_token_ids(tokenizer), seed=EVAL_SEED)
    # The problems GRPO's held-out evaluation draws for this seed: the RL stages' own figures agree.
    problems = task.problems("test", e.problems, seed=cfg.run.seed + 12345)
    result = evaluate(engine, tokenizer, task, problems, e.k, params, template=cfg.prompt.template)
    out = reasoning_figures(result, task.reflection_markers)
    if scorer is not None:  # the same prompts for every stage: the general task's held-out split
        general_task = get_task(cfg.rejection.general_task)
        general = general_task.problems("test", cfg.all_scenario.general_problems, seed=cfg.run.seed + 12345)
        scored = evaluate(engine, tokenizer, general_task, general, e.k, params, template=cfg.prompt.template,
                          scorer=scorer).general
        out.update({"rm_score": scored.get("reward_model"), "rubric": scored["helpfulness"],
                    "general_problems": scored["problems"]})
    return out


def _scorer(cfg, section):
    from aha.models.loading import load_tokenizer
    from aha.rewards.model import load_scorer
    from aha.template import render_prompt

    tokenizer = load_tokenizer(Path(section.path)) if section.path else None
    return load_scorer(section, lambda q: render_prompt(q, cfg.prompt.template, tokenizer))


def reasoning_figures(result, markers) -> dict:
    """The comparison's reasoning columns from an `evaluate` result."""
    texts, lengths, correct, truncated, languages, readable = [], [], [], [], [], []
    for (problem, group), detail in zip(result.completions, result.details):
        language = problem.meta.get("language", "en")
        for completion, accuracy in zip(group, detail["accuracy"]):
            texts.append(completion.text)
            lengths.append(len(completion.ids))
            correct.append(bool(accuracy))
            truncated.append(completion.truncated)
            languages.append(language)
            readable.append(unreadable_reason(completion.text, language, completion.truncated) is None)
    behaviour = behaviour_metrics(texts, lengths, correct, truncated, markers, languages=languages)
    per_problem = [float(np.mean(d["accuracy"])) for d in result.details]
    low, high = bootstrap_ci(per_problem, seed=0)
    return {
        "pass@1": result.pass_at_1, "pass@1_ci95": [low, high], f"cons@{result.k}": result.cons_at_k,
        "k": result.k, "problems": result.problems, "format_rate": result.format_rate,
        "response_length_mean": result.response_length_mean, "reflection_rate": behaviour["reflection_rate"],
        "language_mixing": (result.language_mixing or {}).get("all", 0.0),
        "language_mixing_by_language": result.language_mixing or {},
        "readable_rate": float(np.mean(readable)),
    }


def stage_cost(summary: Mapping | None) -> dict:
    """The stage's FLOPs, tokens and wall time from its cost ledger (the base has none of its own)."""
    if not summary or "cost" not in summary:
        return {}
    ledger = CostLedger.from_dict(summary["cost"])
    ledger.phases.pop("pretrain", None)  # the base's own build is shared by every stage, not this one's
    total = ledger.total()
    return {"flops": total.flops, "seconds": summary.get("wall_seconds", total.seconds),
            "tokens_generated": total.tokens_generated, "tokens_trained": total.tokens_trained}
