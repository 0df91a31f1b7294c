"""Cold-start data (R1 §2.3.1): a few hundred readable long-CoT traces that teach the base R1's
output format before reasoning RL. For the embedded tasks they are generated from the task's own
checker (`Task.cold_start_completion`); real models bring the user's JSONL to `aha sft` instead.
Problems come from the train split with a seed of their own, so they never meet the held-out set.
"""

from __future__ import annotations

from aha.tasks.base import Task
from aha.template import render_prompt


def cold_start_rows(task: Task, n: int, seed: int = 7, template: str = "r1-zero", tokenizer=None) -> list[dict]:
    """`n` prompt/completion rows (what `aha sft` reads), each with the problem's id and language."""
    if n < 1:
        raise ValueError(f"cold start: n must be ≥ 1, got {n}")
    rows = []
    for problem in task.problems("train", n, seed):
        completion = task.cold_start_completion(problem)
        if completion is None:
            raise ValueError(f"task {task.name!r} has no synthetic cold-start traces; give a JSONL of "
                             "readable traces (prompt/completion or messages rows) instead")
        rows.append({"prompt": render_prompt(problem.question, template, tokenizer), "completion": completion,
                     "prompt_id": f"{task.name}:{problem.id}", "language": problem.meta.get("language", "en"),
                     "source": "cold_start"})
    return rows
