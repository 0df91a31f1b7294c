"""aha's SFT stage vs TRL's SFTTrainer on the same tiny Qwen2, tokenizer, rows and settings, 1 thread each.

    PYTHONPATH=src .venv/bin/python bench/vs_trl_sft.py                    # bf16-mixed and fp32, 3 rounds
    PYTHONPATH=src .venv/bin/python bench/vs_trl_sft.py --precision fp32 --rounds 1 --steps 2

Rows: prompt = the R1-Zero template with a division question; completion = " <think>" + that
problem's checking trace (`aha.tasks.division.check_trace`) followed by 0–N more traces + "</think>
<answer>…</answer>", so rows run ~50–500 tokens. Loss on completion tokens only on both sides (TRL:
a prompt/completion dataset, `completion_only_loss=True`). Same rows per optimizer step, same
batches in the same order (TRL's sampler is made sequential over the rows in aha's batch order),
same lr, AdamW betas, clipping and number of steps. TRL runs as padded batches, `padding_free`, and
packed (BFD; `per_device_train_batch_size` packs of `max_length` chosen to hold ~the same rows).

tokens/s, both sides alike: the real (unpadded) prompt + completion tokens of a step's rows,
divided by the step's wall time — from the end of one optimizer step to the end of the next, so
collation/layout, forward, backward, clipping, the optimizer step and the trainer's per-step
bookkeeping all count; the first `--warmup` steps (and start-up: imports, loading, tokenizing)
do not. A run's figure is its measured tokens over its measured seconds. Rounds alternate TRL's
configurations and aha, per precision, so a busy machine hurts both alike; the ratio of a round is
aha's tokens/s over the best TRL configuration's in that precision; the median over rounds is reported.
aha runs with its defaults, which run the template prefix all rows share once per micro-batch
(`sft.share_prefix`); `--unshared-too` adds an aha run per round with it off, so both are measured
against the same TRL runs. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _common as C  # noqa: E402
from vs_trl import TRL_SPEC, ensure_bench_venv, run_worker  # noqa: E402

PRECISIONS = ("bf16-mixed", "fp32")
TRL_CONFIGS = ("padded", "padding_free", "packed")


@dataclass(frozen=True)
class SFTSettings:
    batch_rows: int = 16  # rows per optimizer step, both sides
    steps: int = 4  # measured optimizer steps per run
    warmup: int = 1  # unmeasured first steps per run
    lr: float = 1e-4
    beta2: float = 0.99  # aha's AdamW betas (0.9, 0.99); TRL is given the same
    max_grad_norm: float = 1.0
    threads: int = 1
    max_traces: int = 14  # a row's completion holds 1..max_traces checking traces
    pack_length: int = 1024  # TRL packing: tokens per packed sequence (its default max_length)
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


# ---------------------------------------------------------------- data

def rows(s: SFTSettings) -> list[dict]:
    """prompt/completion rows: one division question each; its completion is its own checking trace
    followed by a seeded number of further traces (other problems', as re-checks), so the rows vary
    from ~50 to ~500 tokens."""
    from aha.tasks import get_task
    from aha.tasks.division import check_trace
    from aha.template import build_prompt

    n = s.batch_rows * (s.steps + s.warmup)
    task = get_task(C.TASK)
    problems = task.problems("train", n, seed=s.seed + 1)
    extra = task.problems("train", n * s.max_traces, seed=s.seed + 2)
    rng = random.Random(s.seed)
    out = []
    for i, p in enumerate(problems):
        k = rng.randint(0, s.max_traces - 1)
        more = extra[i * s.max_traces : i * s.max_traces + k]
        traces = [check_trace(p.meta["a"], p.meta["b"])] + [check_trace(q.meta["a"], q.meta["b"]) for q in more]
        answer = p.meta["a"] // p.meta["b"]
        out.append({"prompt": build_prompt(p.question),
                    "completion": f" <think>{' '.join(traces)}</think> <answer>{answer}</answer>"})
    return out


def write_data(s: SFTSettings, out: Path) -> dict:
    """aha's file (`data.jsonl`, read by `aha.stages.sft`), TRL's (`trl.jsonl`: the same rows in the
    order aha's seeded batches take them), and the token counts of each step's rows."""
    from aha.stages.sft import _batch

    data = rows(s)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    order: list[int] = []
    for index in range(s.steps + s.warmup):  # aha: one epoch, held_out 0 → train = the file's rows
        order += _batch(list(range(len(data))), 0, index, s.batch_rows, s.seed)
    (out / "trl.jsonl").write_text("".join(json.dumps(data[i]) + "\n" for i in order))
    return {"aha": str(out / "data.jsonl"), "trl": str(out / "trl.jsonl")}


def length_stats(model_dir: str, path: str) -> dict:
    from aha.config import DataConfig
    from aha.models.loading import load_tokenizer
    from aha.train.sft_data import load_dataset

    tok = load_tokenizer(Path(model_dir))
    ex = load_dataset(DataConfig(path=path, held_out=0.0, max_length=4096), tok, 0).train
    lengths = sorted(len(e.prompt_ids) + len(e.completion_ids) for e in ex)
    return {"rows": len(lengths), "min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1],
            "mean": sum(lengths) / len(lengths), "prompt_tokens": len(ex[0].prompt_ids),
            "tokens": sum(lengths), "completion_tokens": sum(len(e.completion_ids) for e in ex)}


# ---------------------------------------------------------------- aha worker (runs in a subprocess)

def aha_worker(model_dir: str, data_path: str, s: SFTSettings, precision: str, out_dir: str,
               extra: list[str]) -> None:
    from aha.config import SFTConfig, load_config
    from aha.events import Events
    from aha.stages import sft

    overrides = [f"data.path={data_path}", f"model.path={model_dir}", "data.held_out=0", "data.max_length=4096",
                 "sft.epochs=1", f"sft.batch_rows={s.batch_rows}", f"sft.lr={s.lr}", "sft.schedule=constant",
                 "sft.warmup_ratio=0", "sft.weight_decay=0", f"sft.max_grad_norm={s.max_grad_norm}",
                 f"model.precision={precision}", f"run.threads={s.threads}", f"run.seed={s.seed}",
                 "run.save_every=1000000", "run.progress=false", f"run.out_dir={out_dir}", "run.name=sft", *extra]
    cfg = load_config(SFTConfig, None, overrides)
    marks: list[tuple[float, dict]] = []

    def listen(event) -> None:  # step ends, and the loop's start (the "SFT" phase)
        if event.kind == "metrics" or (event.kind == "phase" and event.data.get("name") == "SFT"):
            marks.append((time.perf_counter(), event.data.get("row", {})))

    sft.run(cfg, Path(out_dir) / "sft", Events([listen]))
    records = []
    for (t0, _), (t1, row) in zip(marks, marks[1:]):
        records.append({"step_s": t1 - t0, "update_s": row["seconds/update"], "tokens": row["row_tokens"],
                        "completion_tokens": row["tokens_trained"], "loss": row["loss"]})
    C.emit({"side": "aha", "precision": precision, "steps": records, "peak_rss_mb": C.peak_rss_mb()})


# ---------------------------------------------------------------- driver

def throughput(run: dict, warmup: int) -> float:
    steps = run["steps"][warmup:]
    return sum(r["tokens"] for r in steps) / sum(r["step_s"] for r in steps)


def summarize(precision: str, runs: dict[str, list[dict]], ratios: dict[str, list[float]], warmup: int) -> dict:
    """One precision's figures over the rounds (every TRL configuration and aha arm), printed and returned."""
    per = {name: [throughput(x, warmup) for x in res] for name, res in runs.items()}
    summary = {
        "tokens_per_s": per, "median_tokens_per_s": {n: C.median(v) for n, v in per.items()},
        "ratios": ratios["aha"], "ratio_median": C.median(ratios["aha"]),
        **({"ratios_unshared": ratios["aha_unshared"], "ratio_median_unshared": C.median(ratios["aha_unshared"])}
           if "aha_unshared" in ratios else {}),
        "update_s_aha": C.median([x["update_s"] for res in runs["aha"] for x in res["steps"][warmup:]]),
        "first_step_loss": {n: res[0]["steps"][0]["loss"] for n, res in runs.items()},
        "completion_tokens_trained": {n: sum(x["completion_tokens"] for x in res[0]["steps"]) for n, res in runs.items()},
        "peak_rss_mb": {n: max(x["peak_rss_mb"] for x in res) for n, res in runs.items()},
    }
    med = ", ".join(f"{n} {v:.0f}" for n, v in summary["median_tokens_per_s"].items())
    print(f"{precision}: median tokens/s {med}; aha / best TRL per round "
          f"{[round(x, 2) for x in ratios['aha']]}, median {summary['ratio_median']:.2f}x "
          f"(target ≥ 2); first-step loss {summary['first_step_loss']}; completion tokens trained "
          f"{summary['completion_tokens_trained']}", flush=True)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", choices=["aha"], help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3, help="alternations of TRL's configurations and aha")
    p.add_argument("--steps", type=int, default=SFTSettings.steps, help="measured optimizer steps per run")
    p.add_argument("--warmup", type=int, default=SFTSettings.warmup, help="unmeasured first steps per run")
    p.add_argument("--batch-rows", type=int, default=SFTSettings.batch_rows)
    p.add_argument("--precision", choices=PRECISIONS, action="append", help="default: both")
    p.add_argument("--trl-config", choices=TRL_CONFIGS, action="append", help="default: all three")
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "aha-bench-qwen2-3m-words")
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "aha-bench-sft")
    p.add_argument("--unshared-too", action="store_true",
                   help="also run aha with sft.share_prefix=false (the template prefix run in every row)")
    args, rest = p.parse_known_args()
    if args.worker:
        return aha_worker(rest[0], rest[1], SFTSettings(**json.loads(rest[2])), rest[3], rest[4], json.loads(rest[5]))

    s = SFTSettings(batch_rows=args.batch_rows, steps=args.steps, warmup=args.warmup)
    precisions = args.precision or list(PRECISIONS)
    configs = args.trl_config or list(TRL_CONFIGS)
    model_dir = C.build_model(C.Settings(), args.model_dir)
    bench_python = ensure_bench_venv()
    paths = write_data(s, args.work_dir)
    lengths = length_stats(str(model_dir), paths["aha"])
    print(f"settings: {s.to_json()}", flush=True)
    print(f"rows: {lengths['rows']} of {lengths['min']}–{lengths['max']} tokens (median {lengths['median']}, "
          f"prompt {lengths['prompt_tokens']}); {lengths['tokens']} tokens, {lengths['completion_tokens']} trained",
          flush=True)
    arms = {"aha": [], **({"aha_unshared": ["sft.share_prefix=false"]} if args.unshared_too else {})}
    runs: dict[str, dict[str, list[dict]]] = {pr: {name: [] for name in [*configs, *arms]} for pr in precisions}
    ratios: dict[str, dict[str, list[float]]] = {pr: {arm: [] for arm in arms} for pr in precisions}
    for r in range(args.rounds):
        for precision in precisions:
            speeds = {}
            for name in configs:
                res = run_worker(str(bench_python), [str(HERE / "_trl_sft_worker.py"), str(model_dir), paths["trl"],
                                                     s.to_json(), precision, name])
                runs[precision][name].append(res)
                speeds[name] = throughput(res, s.warmup)
            for arm, extra in arms.items():
                with tempfile.TemporaryDirectory() as tmp:
                    res = run_worker(sys.executable, [__file__, "--worker", "aha", str(model_dir), paths["aha"],
                                                      s.to_json(), precision, tmp, json.dumps(extra)])
                runs[precision][arm].append(res)
                speeds[arm] = throughput(res, s.warmup)
            best = max((n for n in configs), key=lambda n: speeds[n])
            for arm in arms:
                ratios[precision][arm].append(speeds[arm] / speeds[best])
            figures = "  ".join(f"{n} {v:.0f}" for n, v in speeds.items())
            said = ", ".join(f"{arm} / best TRL ({best}) {ratios[precision][arm][-1]:.2f}x" for arm in arms)
            print(f"round {r + 1}/{args.rounds} {precision:10} tokens/s: {figures}  → {said}", flush=True)
    result = {"settings": {**asdict(s), "trl": TRL_SPEC, "rounds": args.rounds}, "rows": lengths, "precisions": {}}
    for precision in precisions:
        result["precisions"][precision] = summarize(precision, runs[precision], ratios[precision], s.warmup)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
