"""GSM8K (Cobbe et al. 2021): grade-school word problems; the reference number follows `####`.

The model's answer is judged like any math answer, so `1,000`, `1000`, `\\boxed{1000}` and
`1000.0` all match a reference of `1000`.
"""

from __future__ import annotations

from aha.tasks.base import register_task
from aha.tasks.math import MathFileTask
from aha.tasks.records import RecordError, as_text, field
from aha.verify.math_answer import last_boxed


def gsm8k_reference(answer_field: str) -> str | None:
    """The number after the last `####`, commas dropped (`#### 1,000` → `1000`).

    >>> gsm8k_reference("She pays 2*5=<<2*5=10>>10 dollars.\\n#### 10")
    '10'
    """
    if "####" not in answer_field:
        return None
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "") or None


@register_task("gsm8k")
class Gsm8kTask(MathFileTask):
    files = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}

    def reference_answer(self, row: dict, where: str) -> str:
        """GSM8K's `answer` holds the worked solution and `#### N`; a user's file may instead
        hold the bare number, or open-r1's `solution` with a box."""
        value = field(row, ("answer", "solution"), where)
        text = as_text(value, where, "answer")
        reference = gsm8k_reference(text)
        if reference is None:
            reference = last_boxed(text) or (text if "\n" not in text and len(text) < 50 else None)
        if not reference:
            raise RecordError(f"{where}: field 'answer' has no final number after '####'")
        return reference
