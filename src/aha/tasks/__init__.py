"""Tasks: one file each. Importing this package registers them all."""

from aha.tasks.base import TASKS, Problem, Task, get_task, register_task
from aha.tasks import arithmetic as _arithmetic  # noqa: F401
from aha.tasks import code as _code  # noqa: F401  (humaneval)
from aha.tasks import gsm8k as _gsm8k  # noqa: F401
from aha.tasks import logic as _logic  # noqa: F401  (knights_knaves)
from aha.tasks import math as _math  # noqa: F401  (math500, aime24, amc23, math_jsonl)
from aha.tasks import countdown as _countdown  # noqa: F401
from aha.tasks import division as _division  # noqa: F401
from aha.tasks import division_bilingual as _division_bilingual  # noqa: F401
from aha.tasks import general as _general  # noqa: F401  (general_bilingual)
from aha.tasks import mixture as _mixture  # noqa: F401

__all__ = ["TASKS", "Problem", "Task", "get_task", "register_task"]
