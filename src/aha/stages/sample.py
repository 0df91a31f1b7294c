"""Sampling with verdicts (R1's rejection sampling; distillation's teacher traces):
`run(cfg, run_dir, events) -> summary`.

Reads top-down: model → `sample.problems` prompts of the task's split → chunks of prompts, k
samples each, every sample verified and written to `records.jsonl` with its provenance (prompt,
completion, reward, verdict, finish reason, sampling parameters, model, seed) → the registered
filters of `aha.algo.selection` → `sft.jsonl` (prompt/completion rows `aha sft` reads unchanged)
and `summary.json` with what each filter dropped and the cost ledger (phase "teacher_sampling":
generated and prompt tokens at 2·N FLOPs each, N the sampled model's non-embedding parameters;
`cost.jsonl` holds one row per chunk). A killed run resumes at the first chunk it had not
finished; sampling noise depends only on (seed, chunk), so nothing is asked twice and the records
and the ledger equal an uninterrupted run's (seconds aside).
"""

from __future__ import annotations

import time
from pathlib import Path

from aha import runs
from aha.algo.selection import apply_filters
from aha.config import SampleConfig, save_config, to_dict
from aha.events import Events
from aha.models.loading import load_model_dir, load_tokenizer, stop_token_ids
from aha.observe.cost import CostLedger, count_params
from aha.rewards import combine
from aha.rollout import SamplingParams, make_engine
from aha.stages.pretrain import base_model_dir
from aha.tasks import get_task
from aha.template import render_prompt
from aha.train import session
from aha.train.signals import StopRequested, graceful_stop


def run(cfg: SampleConfig, run_dir: Path, events: Events | None = None) -> dict:
    events = (events or Events()).for_stage("sample")
    session.seed_and_threads(cfg.run)
    model_dir = base_model_dir(cfg.model, cfg.pretrain, cfg.task, events)
    engine, tokenizer, model_name, n_params = _engine(cfg, model_dir)
    task = get_task(cfg.task.name, **cfg.task.options)
    s = cfg.sample
    problems = task.problems(s.split, s.problems, seed=cfg.run.seed + 4242)
    chunk = max(1, cfg.rollout.max_batch // s.k)  # prompts per generate call
    chunks = [problems[i : i + chunk] for i in range(0, len(problems), chunk)]
    run_dir.mkdir(parents=True, exist_ok=True)
    records_file, cost_file = run_dir / "records.jsonl", run_dir / "cost.jsonl"
    done = _finished_chunks(records_file, chunks, s.k, events)
    _keep_cost_rows(cost_file, done)
    if not (run_dir / "config.yaml").exists():
        save_config(cfg, run_dir / "config.yaml")
    clock = time.time()
    with graceful_stop() as stop:
        events.phase("sampling", total=len(chunks), completed=done)
        for index in range(done, len(chunks)):
            started = time.time()
            records, prompt_tokens = _sample_chunk(cfg, engine, tokenizer, task, chunks[index], index, chunk,
                                                   model_name)
            # The chunk's cost goes first: a chunk whose records are all written always has its cost
            # row; one cut off before its records is sampled again and its row replaced.
            runs.append_jsonl(cost_file, [{"chunk": index, "seconds": time.time() - started,
                                           "tokens_generated": sum(r["length"] for r in records),
                                           "tokens_forward": prompt_tokens}])
            runs.append_jsonl(records_file, records)
            events.advance(index + 1, len(chunks), f"{sum(r['correct'] for r in records)}/{len(records)} correct")
            if stop.requested and index + 1 < len(chunks):
                raise StopRequested(stop.signum, index + 1, records_file)
    ledger = _ledger(runs.read_jsonl(cost_file), n_params, len(chunks), events)
    return _finish(cfg, run_dir, runs.read_jsonl(records_file), time.time() - clock, ledger, events)


def _engine(cfg: SampleConfig, model_dir: Path):
    """(engine, tokenizer, model name for provenance, N for the cost ledger). With
    `rollout.engine=openai` the endpoint holds the model, and `model.path` only supplies the
    tokenizer that maps ids to text; its size is unknown here, so N is 0 (tokens counted, no FLOPs)."""
    if cfg.rollout.engine == "openai":
        tokenizer = load_tokenizer(Path(model_dir))
        engine = make_engine("openai", None, tokenizer, **cfg.rollout.options)
        return engine, tokenizer, f"{engine.model_name} @ {cfg.rollout.options['base_url']}", 0
    model, tokenizer = load_model_dir(model_dir, cfg.model.dtype)
    engine = make_engine(cfg.rollout.engine, model, tokenizer, max_batch=cfg.rollout.max_batch, bf16=cfg.model.bf16,
                         **cfg.rollout.options)
    return engine, tokenizer, str(model_dir), count_params(model)


def _finished_chunks(records_file: Path, chunks: list, k: int, events: Events) -> int:
    """How many leading chunks `records.jsonl` holds in full; a partly written chunk is dropped so
    it is sampled again whole (same seed, same samples)."""
    if runs.repair_jsonl(records_file):
        events.warning(f"{records_file}: dropped a torn last line (the run was killed while writing it)")
    rows = runs.read_jsonl(records_file)
    counts: dict[int, int] = {}
    for row in rows:
        counts[row["chunk"]] = counts.get(row["chunk"], 0) + 1
    done = 0
    while done < len(chunks) and counts.get(done, 0) == len(chunks[done]) * k:
        done += 1
    if len(rows) != sum(counts.get(i, 0) for i in range(done)):
        kept = [r for r in rows if r["chunk"] < done]
        records_file.write_text("".join(runs.json_line(r) for r in kept))
    if done:
        events.info(f"resuming: {done} of {len(chunks)} chunks already sampled")
    return done


def _keep_cost_rows(cost_file: Path, done: int) -> None:
    """`cost.jsonl` as it was when chunk `done - 1` finished: one row per finished chunk (a torn
    line, rows of chunks to be sampled again and replaced rows dropped)."""
    runs.repair_jsonl(cost_file)
    rows = {row["chunk"]: row for row in runs.read_jsonl(cost_file) if row["chunk"] < done}
    if cost_file.exists():
        cost_file.write_text("".join(runs.json_line(rows[i]) for i in sorted(rows)))


def _ledger(rows: list[dict], n_params: int, chunks: int, events: Events) -> CostLedger:
    """The sampling's cost: one "teacher_sampling" call per chunk, prompts and generated tokens at
    2·N FLOPs each (prompts prefilled once per prompt, as the engines and GRPO's ledger count them)."""
    ledger = CostLedger(n_params=n_params)
    for row in rows:
        ledger.add("teacher_sampling", seconds=row["seconds"], tokens_generated=row["tokens_generated"],
                   tokens_forward=row["tokens_forward"])
    if len(rows) < chunks:  # a run sampled in part before aha recorded sampling cost
        events.warning(f"the cost ledger covers {len(rows)} of {chunks} chunks (the others were sampled "
                       "before aha recorded sampling cost)")
    return ledger


def _sample_chunk(cfg: SampleConfig, engine, tokenizer, task, problems, index: int, chunk: int,
                  model_name: str) -> tuple[list[dict], int]:
    """The chunk's records and its prompt tokens (each prompt once)."""
    s = cfg.sample
    texts = [render_prompt(p.question, cfg.prompt.template, tokenizer) for p in problems]
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                            top_p=cfg.rollout.top_p, stop_token_ids=stop_token_ids(tokenizer),
                            seed=cfg.run.seed * 7919 + index)
    prompt_ids = [tokenizer(t)["input_ids"] for t in texts]
    completions = engine.generate(prompt_ids, params, n=s.k)
    expanded = [problems[c.prompt_index] for c in completions]
    languages = [p.meta.get("language", "en") for p in expanded]
    scored = combine({"accuracy": 1.0, "format": 1.0}, [c.text for c in completions], problems=expanded, task=task,
                     truncated=[c.truncated for c in completions], target_language=languages)
    sampling = {"temperature": params.temperature, "top_p": params.top_p, "max_new_tokens": params.max_new_tokens,
                "seed": params.seed, "k": s.k}
    records = []
    for i, c in enumerate(completions):
        problem = expanded[i]
        records.append({
            "prompt_id": f"{cfg.task.name}:{problem.id}", "chunk": index, "question": problem.question,
            "reference": problem.answer, "prompt": texts[c.prompt_index], "completion": c.text,
            "reward": scored.total[i], "correct": bool(scored.components["accuracy"][i]),
            "format": scored.components["format"][i], "verdict": scored.infos[i],
            "finish_reason": c.finish_reason, "truncated": c.truncated, "length": len(c.ids),
            "language": languages[i], "sampling": sampling, "model": model_name, "task": cfg.task.name,
        })
    return records, sum(map(len, prompt_ids))


def _finish(cfg: SampleConfig, run_dir: Path, records: list[dict], seconds: float, ledger: CostLedger,
            events: Events) -> dict:
    kept, report = apply_filters(records, cfg.sample.filters, cfg.sample.max_per_prompt)
    provenance = ("prompt_id", "question", "reference", "reward", "language", "model", "sampling", "task")
    rows = [{"prompt": r["prompt"], "completion": r["completion"], **{k: r[k] for k in provenance}} for r in kept]
    (run_dir / "sft.jsonl").write_text("".join(runs.json_line(r) for r in rows))
    summary = {
        "stage": "sample", "records": len(records), "kept": len(kept), "filters": report,
        "correct_rate": sum(r["correct"] for r in records) / max(len(records), 1),
        "prompts": len({r["prompt_id"] for r in records}), "tokens_generated": sum(r["length"] for r in records),
        "seconds_this_session": seconds, "cost": ledger.to_dict(), "config": to_dict(cfg),
    }
    runs.write_json(run_dir / "summary.json", summary)
    events.done(summary)
    return summary
