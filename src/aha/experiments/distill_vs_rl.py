"""Table 6 in miniature (`aha experiment distill-vs-rl`): a small student distilled from an
RL-trained teacher against the same student trained by GRPO from its own base, at equal compute.

DeepSeek-R1's Table 6: Qwen-32B-Base after large-scale RL scores 47.0 on AIME 2024, the same base
distilled from R1 72.6. One seed of the miniature, every piece a run directory under `seed-S/`:

1. teacher: `aha zero` at the default (embedded) size and recipe with this seed (`teacher/`);
2. student: a smaller Qwen2 (`STUDENT`) built by the pretrain stage from the same corpus, cached by
   its settings like any embedded base, shared by both arms and every seed (its cost is reported,
   not compared);
3. RL arm (`rl/`): the teacher's GRPO recipe on the student base, stopped at each of `rl_points`
   steps (the stage resumes; `grpo.steps` moves only the finish line) and evaluated there;
4. distill arm (`distill-P/`): `aha distill` from the teacher into the student base, once per
   budget of P teacher problems in `distill_problems`, each evaluated;
5. one instrument scores every model: `aha eval`'s (`evals/`: the same held-out problems, k
   samples at T 0.6, top-p 0.95, one seed);
6. compute: a point's training FLOPs from the stages' cost ledgers (2·N per token forward, 6·N
   per token trained). RL: its rollouts and updates. Distillation: the teacher's sampling at the
   teacher's N and the student's SFT. Evaluation and the student's pretraining count for neither
   arm; the teacher's own RL is not charged to distillation (as in the paper, the teacher already
   exists) and is reported apart;
7. comparison (`aha.algo.budget`): both curves start at (0 FLOPs, the base's pass@1) and are read
   by linear interpolation at the largest budget both cover.

A killed experiment resumes: each evaluated point is kept in `points/` (its training FLOPs and
what was evaluated), so a rerun starts no stage for a finished point and the stage in progress
resumes from its own checkpoint; the seed's result is rebuilt from the points each time (the
comparison rule is code, the points are data).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from aha import runs
from aha.algo.budget import accuracy_at, common_budget
from aha.algo.intervals import crossed_bootstrap_ci
from aha.config import ZeroConfig, load_config
from aha.config.distill import DistillConfig
from aha.events import Events
from aha.stages.paper_eval import EvalSettings

# The student, fixed before any run: hidden 64 and 3 layers against the teacher's 128 and 4 — 148 k
# non-embedding parameters to the teacher's 789 k (1/5.3; R1's distilled students span 1/25 to ~1 of
# its 37 B active parameters), so a teacher token costs 5.3 student tokens. Half the width keeps
# the heads and the 3× MLP ratio; 3 layers, not 2, leave depth for the traces' steps (product,
# compare, step down).
STUDENT = {"hidden": 64, "layers": 3, "heads": 4, "kv_heads": 2, "mlp": 192}
# Phases a ledger records that are not training: held-out evaluation and the base's pretraining.
NOT_TRAINING = ("eval", "pretrain")


@dataclass(frozen=True)
class Schedule:
    """What one seed runs. Overrides go through the stages' configs (validated at load time)."""

    teacher: tuple = ()  # on the zero-tiny recipe: the default `aha zero`
    student: tuple = tuple(f"pretrain.{k}={v}" for k, v in STUDENT.items())  # both arms' base
    rl: tuple = ()  # on the zero-tiny recipe + `student`: the teacher's own RL recipe
    rl_points: tuple = (25, 50, 75, 100, 125, 150, 175, 200)  # GRPO steps evaluated
    distill: tuple = ()  # on `aha distill`'s defaults + `student`
    # Teacher problems per distillation budget (k = 4 samples each): doubling from 250 to 4000, so
    # the largest budget's FLOPs pass the RL arm's final ones (estimated from token counts
    # beforehand, ~1.4e12 against ~0.8e12) and the comparison covers the whole RL run.
    distill_problems: tuple = (250, 500, 1000, 2000, 4000)
    eval: EvalSettings = EvalSettings(problems=200, k=4, temperature=0.6, top_p=0.95, seed=0)


# Seconds instead of minutes, for tests: a few steps, a very small student, a short evaluation.
_SHORT = ("rollout.max_new_tokens=32", "eval.problems=8", "eval.k=1", "eval.every=0", "grpo.prompts_per_step=4",
          "grpo.group_size=4")
QUICK = Schedule(
    teacher=(*_SHORT, "grpo.steps=3"),
    student=("pretrain.documents=512", "pretrain.lr=0.003", "pretrain.warmup_steps=2", "pretrain.vocab_size=300",
             "pretrain.hidden=32", "pretrain.layers=2", "pretrain.heads=2", "pretrain.kv_heads=1", "pretrain.mlp=64"),
    rl=_SHORT, rl_points=(2, 4),
    distill=("sample.k=2", "rollout.max_new_tokens=32", "sft.epochs=1", "sft.batch_rows=8"),
    distill_problems=(16, 32),
    eval=EvalSettings(problems=16, k=2, max_new_tokens=32, seed=0),
)
FULL = Schedule()


def run(out_dir: Path, seeds=(0, 1, 2), quick: bool = False, events: Events | None = None, *,
        threads: int = 1) -> dict:
    """Every seed, then `results.json` and `report.html` in `out_dir`; returns the results."""
    from aha.experiments.distill_vs_rl_report import write_report

    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds: expected distinct seeds >= 0, got {seeds}")
    per_seed = [run_seed(out_dir, seed, quick, events, threads=threads) for seed in seeds]
    schedule = QUICK if quick else FULL
    results = {"experiment": "distill-vs-rl", "quick": quick, "schedule": _schedule_json(schedule),
               "per_seed": per_seed, "summary": summarize(per_seed)}
    runs.write_json(out_dir / "results.json", results)
    results["report"] = str(write_report(results, out_dir))
    return results


def run_seed(out_dir: Path, seed: int, quick: bool = False, events: Events | None = None, *,
             teacher_dir: Path | None = None, threads: int = 1) -> dict:
    """One seed under `out_dir/seed-<seed>`: teacher, both arms, the equal-FLOPs comparison.
    `teacher_dir`: a finished `aha zero` run to use as the teacher instead of training one."""
    events = (events or Events()).for_stage("distill-vs-rl")
    schedule = QUICK if quick else FULL
    seed_dir = Path(out_dir) / f"seed-{seed}"
    _claim(seed_dir, schedule)
    finished = (seed_dir / "result.json").exists()
    if finished:  # nothing runs; reading the points back is not timed
        events.info(f"seed {seed}: finished earlier; its result is rebuilt from {seed_dir / 'points'}")
    ctx = _Seed(seed_dir, seed, schedule, threads, events)
    with _clock(seed_dir, "teacher", not finished):
        teacher = ctx.teacher(teacher_dir)
    with _clock(seed_dir, "student_base", not finished):  # built once, then cached for every seed
        student = ctx.student_base()
    with _clock(seed_dir, "rl", not finished):
        rl = ctx.rl_arm(student["model_dir"])
    with _clock(seed_dir, "distill", not finished):
        distill = ctx.distill_arm(student["model_dir"], teacher["run_dir"])
    result = {"seed": seed, "teacher": teacher, "student": student, "rl": rl, "distill": distill,
              "comparison": compare(rl["points"], distill["points"]),
              "wall_seconds": json.loads((seed_dir / "timings.json").read_text())}
    runs.write_json(seed_dir / "result.json", result)
    c = result["comparison"]
    events.info(f"seed {seed}: at {c['budget_flops']:.3g} FLOPs RL {c['rl']:.3f}, distilled {c['distill']:.3f} "
                f"(teacher {teacher['pass@1']:.3f})")
    return result


def compare(rl_points: list[dict], distill_points: list[dict]) -> dict:
    """Both arms' pass@1 at the largest FLOPs budget both cover (`aha.algo.budget`), per problem
    too (for the interval over seeds and problems), and each arm's final point. Beside it, the same
    comparison with the teacher's sampling left uncharged (the paper's own accounting: it compares
    training runs), to show how much of the verdict the teacher's bill decides."""
    uncharged = [{**p, "flops": p["flops"] - p.get("teacher_sampling_flops", 0.0)} for p in distill_points]
    return {
        "rule": "largest budget both arms cover (the smaller final FLOPs), linear interpolation in FLOPs",
        **_at_common_budget(rl_points, distill_points),
        **{f"{arm}_final": {k: pts[-1].get(k) for k in ("flops", "pass@1", "reflection_rate", "response_length_mean")}
           for arm, pts in (("rl", rl_points), ("distill", distill_points))},
        "teacher_sampling_not_charged": {k: v for k, v in _at_common_budget(rl_points, uncharged).items()
                                         if k != "difference_by_problem"},
    }


def _at_common_budget(rl_points: list[dict], distill_points: list[dict]) -> dict:
    curves = {"rl": rl_points, "distill": distill_points}
    budget = common_budget([[p["flops"] for p in pts] for pts in curves.values()])
    shares = {arm: accuracy_at([p["flops"] for p in pts], [p["shares"] for p in pts], budget)
              for arm, pts in curves.items()}
    return {"budget_flops": budget, "rl": float(shares["rl"].mean()), "distill": float(shares["distill"].mean()),
            "difference": float(shares["distill"].mean() - shares["rl"].mean()),
            "difference_by_problem": (shares["distill"] - shares["rl"]).tolist()}


def summarize(per_seed: list[dict]) -> dict:
    """The per-seed table at each seed's equal-FLOPs budget, the mean distilled − RL difference
    with a 95 % interval (bootstrap over seeds and problems), and a one-line verdict."""
    if not per_seed:
        raise ValueError("summarize needs at least one seed's result")
    rows = [{"seed": r["seed"], "budget_flops": r["comparison"]["budget_flops"], "teacher": r["teacher"]["pass@1"],
             "rl": r["comparison"]["rl"], "distill": r["comparison"]["distill"],
             "difference": r["comparison"]["difference"],
             # Behaviour at each arm's last point: did the student check itself, as the teacher does?
             "reflection": {arm: r["comparison"][f"{arm}_final"].get("reflection_rate") for arm in ("rl", "distill")},
             "teacher_reflection": r["teacher"].get("reflection_rate")} for r in per_seed]
    mean = {key: float(np.mean([row[key] for row in rows])) for key in ("teacher", "rl", "distill", "difference")}
    low, high = crossed_bootstrap_ci([r["comparison"]["difference_by_problem"] for r in per_seed])
    wins = sum(row["difference"] > 0 for row in rows)
    uncharged = float(np.mean([r["comparison"]["teacher_sampling_not_charged"]["difference"] for r in per_seed]))
    return {"rows": rows, "mean": mean, "difference_ci95": [low, high], "distill_wins": wins, "seeds": len(rows),
            "mean_difference_teacher_sampling_not_charged": uncharged,
            "verdict": _verdict(wins, len(rows), mean["difference"], low, high),
            "interval": "percentile bootstrap over seeds and held-out problems (aha.algo.intervals)"}


def _verdict(wins: int, n: int, mean: float, low: float, high: float) -> str:
    numbers = f"distilled − RL {100 * mean:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}], distilled ahead on {wins} of {n} seeds"
    if wins == n and low > 0:
        return f"reproduces Table 6's direction: {numbers}"
    if wins == 0 and high < 0:
        return f"the opposite of Table 6's direction: {numbers}"
    return f"does not settle Table 6's direction: {numbers}"


def training_flops(cost: dict) -> float:
    """A cost ledger's (`summary.json["cost"]`) FLOPs less evaluation and pretraining."""
    return float(sum(p["flops"] for name, p in cost["phases"].items() if name not in NOT_TRAINING))


class _Seed:
    """One seed's stages; each method returns finished points or runs what is missing."""

    def __init__(self, seed_dir: Path, seed: int, schedule: Schedule, threads: int, events: Events):
        self.dir, self.seed, self.schedule, self.threads, self.events = seed_dir, seed, schedule, threads, events
        self.common = [f"run.seed={seed}", f"run.threads={threads}", f"run.out_dir={seed_dir}", "run.progress=false"]

    def zero_config(self, name: str, overrides) -> ZeroConfig:
        recipe = Path(str(resources.files("aha") / "recipes" / "zero-tiny.yaml"))
        return load_config(ZeroConfig, recipe, [*self.common, f"run.name={name}", *overrides])

    def teacher(self, teacher_dir: Path | None) -> dict:
        from aha.stages import grpo

        point_file = self.dir / "points" / "teacher.json"
        if point_file.exists():
            return self.read_point(point_file)
        run_dir = Path(teacher_dir) if teacher_dir else self.dir / "teacher"
        if teacher_dir is None and not (run_dir / "summary.json").exists():
            grpo.run(self.zero_config("teacher", self.schedule.teacher), run_dir, self.events)
        if not (run_dir / "summary.json").is_file():
            raise FileNotFoundError(f"{run_dir}: not a finished `aha zero` run (no summary.json)")
        cost = json.loads((run_dir / "summary.json").read_text()).get("cost")
        point = {"name": "teacher", "run_dir": str(run_dir), **self.evaluate(runs.model_dir_of(run_dir), "teacher"),
                 "rl_flops": training_flops(cost) if cost else None, "parameters": cost["params"] if cost else None}
        return _keep(point_file, point)

    def student_base(self) -> dict:
        """The student's base (built now if not cached) and its pretraining, a cost both arms share."""
        from aha.stages.pretrain import ensure_base_model

        cfg = self.zero_config("rl", self.schedule.student)
        model_dir = ensure_base_model(cfg.pretrain, cfg.task, self.events)
        stats = json.loads((model_dir / "pretrain.json").read_text())
        return {"model_dir": str(model_dir), "shape": {k: getattr(cfg.pretrain, k) for k in STUDENT},
                "pretrain_wall_seconds": stats["wall_seconds"], "pretrain_tokens": stats["tokens_trained"],
                "parameters_total": stats["parameters"]}

    def rl_arm(self, base_dir: str) -> dict:
        """GRPO of the student, stopped and evaluated at each of `rl_points`: every stop is a
        checkpoint whose ledger gives the FLOPs spent up to it."""
        from aha.stages import grpo

        points = [self.base_point(base_dir)]
        run_dir, every = self.dir / "rl", math.gcd(*self.schedule.rl_points)
        for step in self.schedule.rl_points:
            point_file = self.dir / "points" / f"rl-step-{step}.json"
            if not point_file.exists():
                checkpoint = run_dir / f"checkpoint-{step}"
                if not checkpoint.is_dir():
                    cfg = self.zero_config("rl", [*self.schedule.student, *self.schedule.rl, f"grpo.steps={step}",
                                                  f"run.save_every={every}"])
                    grpo.run(cfg, run_dir, self.events)
                point = {"name": f"rl-step-{step}", "step": step, "flops": training_flops(_checkpoint_cost(checkpoint)),
                         **self.evaluate(checkpoint, f"rl-step-{step}")}
                _keep(point_file, point)
            points.append(self.read_point(point_file))
        return {"run_dir": str(run_dir), "points": points}

    def distill_arm(self, base_dir: str, teacher_run: str) -> dict:
        """One `aha distill` per budget of teacher problems, its FLOPs the teacher's sampling plus the SFT."""
        from aha.stages import distill

        points = [self.base_point(base_dir)]
        for problems in self.schedule.distill_problems:
            name = f"distill-{problems}"
            point_file = self.dir / "points" / f"{name}.json"
            if not point_file.exists():
                run_dir = self.dir / name
                if (run_dir / "summary.json").exists():
                    summary = json.loads((run_dir / "summary.json").read_text())
                else:
                    cfg = load_config(DistillConfig, None, [
                        *self.common, f"run.name={name}", f"teacher.path={teacher_run}", *self.schedule.student,
                        *self.schedule.distill, f"sample.problems={problems}"])
                    summary = distill.run(cfg, run_dir, self.events)
                point = {"name": name, "problems": problems, "flops": training_flops(summary["cost"]),
                         "teacher_sampling_flops": summary["cost"]["phases"]["teacher_sampling"]["flops"],
                         "trained_rows": summary["trained_rows"], "teacher_correct_rate": summary["correct_rate"],
                         **self.evaluate(Path(summary["student_dir"]), name)}
                _keep(point_file, point)
            points.append(self.read_point(point_file))
        return {"points": points}

    def base_point(self, base_dir: str) -> dict:
        """Both arms' first point: the student base at 0 training FLOPs."""
        point_file = self.dir / "points" / "base.json"
        if not point_file.exists():
            _keep(point_file, {"name": "base", "flops": 0.0, **self.evaluate(Path(base_dir), "base")})
        return self.read_point(point_file)

    def evaluate(self, model_dir: Path, name: str) -> dict:
        """`aha eval` of a model directory into `evals/<name>` (reused when there): pass@1, its
        interval, each problem's share of correct samples, and the behaviour the samples show."""
        import torch

        from aha.observe.metrics import reflection_count
        from aha.stages import paper_eval
        from aha.tasks import get_task

        out = self.dir / "evals" / name
        if not (out / "eval.json").exists():
            torch.set_num_threads(self.threads)
            paper_eval.run(str(model_dir), self.schedule.eval, out)
            self.events.info(f"seed {self.seed}: {name}: pass@1 {json.loads((out / 'eval.json').read_text())['pass@1']:.3f}")
        report = json.loads((out / "eval.json").read_text())
        records = runs.read_jsonl(out / "records.jsonl")
        correct, k = [float(r["correct"]) for r in records], report["k"]
        markers = get_task(self.schedule.eval.task).reflection_markers
        return {"model": str(model_dir), "pass@1": report["pass@1"], "ci95": report["pass@1_ci95"],
                "eval_dir": str(out), "shares": [sum(correct[i : i + k]) / k for i in range(0, len(correct), k)],
                "response_length_mean": report["response_length_mean"],
                "reflection_rate": float(np.mean([reflection_count(r["completion"], markers) > 0 for r in records]))}

    def read_point(self, point_file: Path) -> dict:
        """A kept point, its evaluation's figures derived again from `evals/` (no model runs)."""
        point = json.loads(point_file.read_text())
        return {**point, **self.evaluate(Path(point["model"]), point["name"])}


def _checkpoint_cost(checkpoint: Path) -> dict:
    """The cost ledger a GRPO checkpoint was saved with (the FLOPs up to its step)."""
    import torch

    return torch.load(checkpoint / "trainer_state.pt", weights_only=False)["state"]["cost"]


def _keep(path: Path, data: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.write_json(path, data)
    return data


def _claim(seed_dir: Path, schedule: Schedule) -> None:
    """A seed directory holds one schedule: resuming a full run with --quick (or the reverse) is refused."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    marker, mine = seed_dir / "schedule.json", _schedule_json(schedule)
    if marker.exists() and json.loads(marker.read_text()) != mine:
        raise ValueError(f"{seed_dir}: holds a run of another schedule (--quick or not, or another aha version's); "
                         "use another --out")
    runs.write_json(marker, mine)


def _schedule_json(schedule: Schedule) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(schedule)))


@contextmanager
def _clock(seed_dir: Path, name: str, record: bool = True):
    """Add the block's wall seconds to `timings.json[name]` (summed over resumed sessions)."""
    start = time.time()
    try:
        yield
    finally:
        if record:
            path = seed_dir / "timings.json"
            timings = json.loads(path.read_text()) if path.exists() else {}
            timings[name] = timings.get(name, 0.0) + time.time() - start
            runs.write_json(path, timings)
