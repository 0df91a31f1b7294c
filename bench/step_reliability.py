"""Does a bilingual policy check more reliably in one language? (the premise of R1 §2.3.2 in miniature)

    PYTHONPATH=src .venv/bin/python bench/step_reliability.py [--models base=SHIPPED run=/tmp/r2/mixing200/accuracy-s0]

The bilingual task's corpus writes check steps whose verdict is wrong 25 % of the time in English and
3 % in Chinese (`step_error`), so that accuracy-only RL has a reason to drift into Chinese. That reason
exists for the policy only if the policy itself inherited the gap. This bench samples each model on
the task's test split (default 2000 problems × 8, T 1.0, the RL rollout's sampling), parses every
check step (`8*86=688>645 too high, wait,` / `… 好`), and reports per step language how often its
verdict (`>` or `<=`) disagrees with the true product, together with the same figures for the
corpus itself. `SHIPPED` names the embedded bilingual base the recipes resolve to; any model or run
directory works. Records are kept under --out, and a finished sampling run is read, not rerun.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path

# One check step as the bilingual traces write it: product, verdict, then the step's language word.
STEP = re.compile(r"(\d{1,2})\*(\d{1,3})=(\d{1,4})(>|<=)(\d{1,4}) (too high, wait,|ok|太大, 等等,|好)")
STEP_LANGUAGE = {"too high, wait,": "en", "ok": "en", "太大, 等等,": "zh", "好": "zh"}


def check_steps(completion: str) -> list[tuple[str, bool]]:
    """(language, verdict is wrong) of each check step in the thought: wrong when the stated `>` or
    `<=` disagrees with the true product q*b against the dividend (the step's own product may be
    miscomputed too; the verdict is judged against the truth, as the answer is)."""
    think = completion.split("</think>")[0]
    return [(STEP_LANGUAGE[word], (sign == ">") != (int(q) * int(b) > int(a)))
            for q, b, _product, sign, a, word in STEP.findall(think)]


def trace_kind(completion: str, prompt_language: str) -> str:
    """'nocheck' (no step with a verdict), or a check: 'check-pure' when every step is in the
    prompt's language, else 'check-mixed'. A lone confirmed guess (`9*76=684<=740 ok`) is a check."""
    languages = {lang for lang, _ in check_steps(completion)}
    if not languages:
        return "nocheck"
    return "check-mixed" if languages - {prompt_language} else "check-pure"


def tally(records) -> dict:
    """Per-language step counts and verdict errors, and per (prompt language, trace kind) counts and
    correct answers, over records with `completion`, `language` and `correct`; `per_record` keeps
    each record's (en steps, en wrong, zh steps, zh wrong) for the gap's interval."""
    steps, wrong, traces, right, per_record = Counter(), Counter(), Counter(), Counter(), []
    for r in records:
        mine = Counter()
        for lang, is_wrong in check_steps(r["completion"]):
            steps[lang] += 1
            wrong[lang] += is_wrong
            mine[lang] += 1
            mine[lang + "-wrong"] += is_wrong
        if mine:
            per_record.append((mine["en"], mine["en-wrong"], mine["zh"], mine["zh-wrong"]))
        key = (r["language"], trace_kind(r["completion"], r["language"]))
        traces[key] += 1
        right[key] += bool(r["correct"])
    return {"steps": steps, "wrong": wrong, "traces": traces, "right": right, "per_record": per_record}


def gap_interval(per_record: list[tuple[int, int, int, int]], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of (en verdict error − zh verdict error), resampling whole samples:
    the steps of one trace are not independent (a wrong verdict changes the steps after it)."""
    import numpy as np

    if not per_record:
        return float("nan"), float("nan")
    counts = np.asarray(per_record, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(counts), size=(draws, len(counts)))
    sums = np.stack([counts[row].sum(axis=0) for row in picks])
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = sums[:, 1] / sums[:, 0] - sums[:, 3] / sums[:, 2]
    gaps = gaps[np.isfinite(gaps)]
    if not len(gaps):
        return float("nan"), float("nan")
    low, high = np.percentile(gaps, [2.5, 97.5])
    return float(low), float(high)


def corpus_records(n: int, seed: int = 0) -> list[dict]:
    """The task's own pretraining traces for n train problems, scored like samples (the task's verifier)."""
    from aha.tasks import get_task
    from aha.template import parse_response

    task, rng = get_task("division_bilingual"), random.Random(seed)
    rows = []
    for problem in task.problems("train", n, seed):
        doc = task.corpus_document(problem, rng)
        score, _ = task.verify(parse_response(doc).answer, problem)
        rows.append({"completion": doc, "language": problem.meta["language"], "correct": score == 1.0})
    return rows


def sampled_records(model: str, out: Path, problems: int, k: int, seed: int) -> list[dict]:
    from aha import runs
    from aha.config import load_config
    from aha.config.sections import BILINGUAL_PRETRAIN
    from aha.config.stages import SampleConfig
    from aha.stages import sample

    source = ([f"pretrain.documents={BILINGUAL_PRETRAIN.documents}",
               f"pretrain.general_share={BILINGUAL_PRETRAIN.general_share}"] if model == "SHIPPED"
              else [f"model.path={runs.model_dir_of(Path(model))}"])
    cfg = load_config(SampleConfig, None, [*source, "task.name=division_bilingual", "sample.split=test",
                                           f"sample.problems={problems}", f"sample.k={k}", "sample.filters=[]",
                                           "rollout.temperature=1.0", "rollout.top_p=1.0", f"run.seed={seed}",
                                           "run.threads=1", "run.progress=false"])
    if not (out / "summary.json").exists():
        sample.run(cfg, out)
    return runs.read_jsonl(out / "records.jsonl")


def table(results: dict[str, dict]) -> str:
    lines = ["| source | check steps en / zh | verdict wrong en | verdict wrong zh | gap (en − zh, points, 95 % bootstrap) | "
             "check traces correct (en prompts: pure / mixed) | (zh prompts: pure / mixed) | no-check correct |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, t in results.items():
        err = {lang: _share(t["wrong"][lang], t["steps"][lang]) for lang in ("en", "zh")}
        cell = lambda lang, kind: (f"{_pct(_share(t['right'][(lang, kind)], t['traces'][(lang, kind)]))} "  # noqa: E731
                                   f"(n={t['traces'][(lang, kind)]})")
        nocheck = _share(sum(t["right"][(lang, "nocheck")] for lang in ("en", "zh")),
                         sum(t["traces"][(lang, "nocheck")] for lang in ("en", "zh")))
        low, high = gap_interval(t["per_record"])
        gap = "—" if err["en"] is None or err["zh"] is None else \
            f"{(err['en'] - err['zh']) * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}]"
        lines.append(f"| {name} | {t['steps']['en']} / {t['steps']['zh']} | {_pct(err['en'])} | {_pct(err['zh'])} | "
                     f"{gap} | {cell('en', 'check-pure')} / {cell('en', 'check-mixed')} | "
                     f"{cell('zh', 'check-pure')} / {cell('zh', 'check-mixed')} | {_pct(nocheck)} |")
    return "\n".join(lines)


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["base=SHIPPED"], help="NAME=MODEL_OR_RUN_DIR (or SHIPPED)")
    ap.add_argument("--problems", type=int, default=2000)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--records", nargs="*", default=[], help="NAME=records.jsonl of an `aha sample` run to score as it "
                    "is (prompts without a language count as English: the monolingual division task)")
    ap.add_argument("--corpus", type=int, default=20000, help="corpus traces to score (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/step-reliability"))
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the bench's table only
    results = {"corpus": tally(corpus_records(args.corpus, args.seed))} if args.corpus else {}
    for spec in args.models:
        name, _, model = spec.partition("=")
        if not model:
            ap.error(f"--models {spec!r}: expected NAME=MODEL_OR_RUN_DIR")
        results[name] = tally(sampled_records(model, args.out / name, args.problems, args.k, args.seed))
    for spec in args.records:
        name, _, path = spec.partition("=")
        rows = [{"language": "en", **r} for r in (json.loads(line) for line in open(path, encoding="utf-8"))]
        results[name] = tally(rows)
    text = table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    print(json.dumps({n: {lang: [t["wrong"][lang], t["steps"][lang]] for lang in ("en", "zh")}
                      for n, t in results.items()}))


if __name__ == "__main__":
    main()
