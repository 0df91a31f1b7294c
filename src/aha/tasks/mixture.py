"""A mixture of tasks: R1's all-scenario RL draws reasoning and general prompts into one batch.

    task.name=mixture
    task.options={parts: {division_bilingual: 0.8, general_bilingual: 0.2},
                  options: {division_bilingual: {second_share: 0.5}},
                  base: division_bilingual}

`parts` maps registered task names to their shares (positive weights, normalised); `options` (optional)
gives a part's own constructor options; `base` (optional, default the first part) names the part whose
embedded base model a run from `model.path=embedded` starts from — a mixture has no corpus of its own.

Each call to `problems(split, n, seed)` takes exactly each part's share of `n` (largest remainder),
draws them from that part with the same seed — so the reasoning problems of a mixture's held-out set
are a prefix of that task's own held-out set, in order — and interleaves them in seeded slots. Every problem
carries `meta["task"]` (its part) and `meta["kind"]` ("general" where the part says so, else
"reasoning"); `verify` dispatches to the part, and the accuracy reward skips general problems.
"""

from __future__ import annotations

import inspect
import math
import random
from typing import Any, Mapping

from aha.tasks.base import TASKS, Problem, Task, register_task


def check_mixture_options(parts: Any = None, options: Any = None, base: str = "") -> None:
    """Raise ValueError naming the sub-key (`parts`, `options.NAME`, `base`) of a bad mixture. Reads
    nothing and builds no task: it runs at config load time (`aha.config.checks.task_options`)."""
    if not isinstance(parts, Mapping) or not parts:
        raise ValueError(f"parts: expected a mapping of task names to shares, e.g. "
                         f"{{division_bilingual: 0.8, general_bilingual: 0.2}}, got {parts!r}")
    for name, share in parts.items():
        if name == "mixture" or name not in TASKS:
            valid = ", ".join(sorted(n for n in TASKS if n != "mixture"))
            raise ValueError(f"parts.{name}: unknown task {name!r}; valid: {valid}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) or share <= 0:
            raise ValueError(f"parts.{name}: share must be a finite number > 0, got {share!r}")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ValueError(f"options: expected a mapping of part names to their options, got {options!r}")
    for name, part_options in options.items():
        if name not in parts:
            raise ValueError(f"options.{name}: not one of the parts ({', '.join(parts)})")
        if not isinstance(part_options, Mapping):
            raise ValueError(f"options.{name}: expected a mapping of {name}'s options, got {part_options!r}")
        try:
            inspect.signature(TASKS[name]).bind(**part_options)
        except TypeError as err:
            params = ", ".join(inspect.signature(TASKS[name]).parameters) or "no options"
            raise ValueError(f"options.{name}: {err} (task {name!r} takes: {params})") from None
    if base and base not in parts:
        raise ValueError(f"base: {base!r} is not one of the parts ({', '.join(parts)})")


def apportion(n: int, shares: list[float]) -> list[int]:
    """Integer counts summing to `n`, proportional to `shares` (largest remainder; ties to the first).

    >>> apportion(16, [0.8, 0.2])
    [13, 3]
    """
    total = sum(shares)
    exact = [n * s / total for s in shares]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


@register_task("mixture")
class MixtureTask(Task):
    check_options = staticmethod(check_mixture_options)

    def __init__(self, parts: Mapping[str, float] | None = None, options: Mapping[str, Mapping] | None = None,
                 base: str = ""):
        check_mixture_options(parts, options, base)
        options = options or {}
        self.names = list(parts)
        self.shares = [float(parts[n]) for n in self.names]
        self.parts: dict[str, Task] = {n: TASKS[n](**dict(options.get(n, {}))) for n in self.names}
        self.base = base or self.names[0]
        readers = {n: t.reads_full_completion for n, t in self.parts.items()}
        if len(set(readers.values())) > 1:
            raise ValueError(f"parts: cannot mix tasks that read the whole completion with tasks that read the "
                             f"<answer> block ({readers})")
        self.reads_full_completion = next(iter(readers.values()))
        self.reflection_markers = tuple(dict.fromkeys(m for t in self.parts.values() for m in t.reflection_markers))

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        counts = apportion(n, self.shares)
        drawn = {name: iter([_tagged(p, name) for p in self.parts[name].problems(split, count, seed)] if count else [])
                 for name, count in zip(self.names, counts)}
        # Seeded slots, each part's problems in their own order: a part's subsequence is its own list.
        slots = [name for name, count in zip(self.names, counts) for _ in range(count)]
        random.Random(f"mixture-{seed}").shuffle(slots)
        return [next(drawn[name]) for name in slots]

    def part_of(self, problem: Problem) -> Task:
        name = problem.meta.get("task")
        if name not in self.parts:
            raise ValueError(f"problem {problem.id!r} names no part of this mixture (meta task={name!r}; "
                             f"parts: {', '.join(self.names)})")
        return self.parts[name]

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        return self.part_of(problem).verify(answer, problem)

    def verify_many(self, answers: list[str | None], problems: list[Problem]) -> list[tuple[float, dict]]:
        """Each part's problems go to that part in one batch (slow verifiers keep their parallelism)."""
        out: list = [None] * len(problems)
        for name, task in self.parts.items():
            idx = [i for i, p in enumerate(problems) if p.meta.get("task") == name]
            for i, verdict in zip(idx, task.verify_many([answers[i] for i in idx], [problems[i] for i in idx])):
                out[i] = verdict
        missing = [problems[i] for i, v in enumerate(out) if v is None]
        if missing:
            self.part_of(missing[0])  # raises, naming the problem
        return out

    def corpus_document(self, problem: Problem, rng: random.Random) -> str | None:
        return self.part_of(problem).corpus_document(problem, rng)

    def is_self_correction(self, row: dict, markers=()) -> bool:
        """Any part's own "aha" rule (the report's milestone hook); the generic rule when none has one."""
        hooks = [hook for task in self.parts.values() if (hook := getattr(task, "is_self_correction", None))]
        if not hooks:
            from aha.observe.aha import generic_self_correction

            hooks = [generic_self_correction]
        return any(hook(row, markers) for hook in hooks)


def _tagged(problem: Problem, name: str) -> Problem:
    meta = {**problem.meta, "task": name, "kind": problem.meta.get("kind", "reasoning")}
    return Problem(question=problem.question, answer=problem.answer, id=problem.id, meta=meta)


def embedded_base_task(task_cfg):
    """The task config whose embedded base a run of `task_cfg` starts from: a mixture's `base` part
    (with that part's options), any other task itself."""
    if task_cfg.name != "mixture":
        return task_cfg
    options = dict(task_cfg.options)
    check_mixture_options(**options)
    base = options.get("base") or next(iter(options["parts"]))
    return type(task_cfg)(name=base, options=dict((options.get("options") or {}).get(base, {})))
