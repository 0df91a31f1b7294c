"""Math word problems with LaTeX answers: MATH-500, AIME 2024, AMC 2023, or a user's file.

Rows may use the packaged shapes or open-r1's columns: the question from `problem` (or
`question`/`prompt`), the reference from `answer`, else the last `\\boxed{}` of `solution`.
Answers are judged by `aha.verify.math_answer.judge_math` (fast path, then math-verify in a
bounded worker), so `verify` is safe to call from any thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

from aha.tasks.base import Problem, Task, register_task
from aha.tasks.records import RecordError, as_text, field, packaged, read_records, seeded_sample
from aha.template import R1_MATH_SUFFIX
from aha.verify.math_answer import DEFAULT_TIMEOUT_S, judge_math, last_boxed, math_pool

PROMPT_STYLES = ("r1_zero", "r1")
QUESTION_FIELDS = ("problem", "question", "prompt")


def styled_question(question: str, style: str) -> str:
    """'r1_zero': the question alone (the R1-Zero template around it asks for <answer> tags);
    'r1': the question plus R1's "Please reason step by step, … within \\boxed{}." line."""
    if style == "r1_zero":
        return question
    if style == "r1":
        return f"{question}\n{R1_MATH_SUFFIX}"
    raise ValueError(f"unknown prompt_style {style!r}; valid: {', '.join(PROMPT_STYLES)}")


class MathFileTask(Task):
    """Problems read from a file per split; `verify` compares math answers.

    Subclasses set `files` (split → packaged file); `path`/`test_path` point at a user's
    JSONL/parquet instead, in the same shapes.
    """

    files: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        path: str | None = None,
        test_path: str | None = None,
        prompt_style: str = "r1_zero",
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        styled_question("", prompt_style)  # validate early
        self.paths: dict[str, Path] = {split: packaged(name) for split, name in self.files.items()}
        if path is not None:
            self.paths["train"] = Path(path)
            if not self.files:  # a user's single file serves both splits unless test_path is given
                self.paths["test"] = Path(path)
        if test_path is not None:
            self.paths["test"] = Path(test_path)
        self.prompt_style = prompt_style
        self.reads_full_completion = prompt_style == "r1"  # "put your final answer within \boxed{}"
        self.timeout = timeout
        self._cache: dict[str, list[Problem]] = {}

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """`n` problems from `split` (n <= 0: all, in file order); deterministic in `seed`."""
        return seeded_sample(self.all_problems(split), n, seed)

    def all_problems(self, split: str) -> list[Problem]:
        if split not in self.paths:
            have = ", ".join(sorted(self.paths)) or "none (pass path=)"
            raise ValueError(f"task {self.name!r} has no {split!r} split; available: {have}")
        if split not in self._cache:
            path = self.paths[split]
            problems = [self.row_to_problem(row, f"{path}, line {line}", f"{split}-{i}")
                        for i, (line, row) in enumerate(read_records(path))]
            if not problems:
                raise RecordError(f"{path}: no rows")
            self._cache[split] = problems
        return self._cache[split]

    def row_to_problem(self, row: dict, where: str, default_id: str) -> Problem:
        question = as_text(field(row, QUESTION_FIELDS, where), where, "problem")
        answer = self.reference_answer(row, where)
        meta = {k: v for k, v in row.items() if k not in ("problem", "question", "prompt", "answer", "solution")
                and isinstance(v, (str, int, float, bool))}
        pid = next((str(row[k]) for k in ("unique_id", "id") if row.get(k) not in (None, "")), default_id)
        return Problem(question=styled_question(question, self.prompt_style), answer=answer, id=pid, meta=meta)

    def reference_answer(self, row: dict, where: str) -> str:
        value = field(row, ("answer",), where, required=False)
        if value is not None:
            return as_text(value, where, "answer")
        solution = field(row, ("solution",), where, required=False)
        boxed = last_boxed(str(solution)) if solution is not None else None
        if boxed:
            return boxed
        raise RecordError(f"{where}: missing field 'answer' (and no \\boxed{{}} answer in 'solution')")

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        return judge_math(answer, problem.answer, timeout=self.timeout)

    def verify_many(self, answers: Sequence[str | None], problems: Sequence[Problem]) -> list[tuple[float, dict]]:
        """`verify` over a batch, in parallel over the math pool's workers."""
        with ThreadPoolExecutor(max_workers=math_pool().max_workers) as threads:
            return list(threads.map(self.verify, answers, problems))


@register_task("math_jsonl")
class MathJsonlTask(MathFileTask):
    """A user's math file: `aha … --task=math_jsonl --task.path=train.jsonl [--task.test_path=…]`.
    With only `path`, both splits read it."""

    def __init__(self, path: str | None = None, **options):
        if path is None:
            raise ValueError("task 'math_jsonl' needs path= (a JSONL or parquet file with problem/answer columns)")
        super().__init__(path=path, **options)


@register_task("math500")
class Math500Task(MathFileTask):
    files = {"test": "math500/test.jsonl"}


@register_task("aime24")
class Aime24Task(MathFileTask):
    files = {"test": "aime24/test.jsonl"}


@register_task("amc23")
class Amc23Task(MathFileTask):
    files = {"test": "amc23/test.jsonl"}
