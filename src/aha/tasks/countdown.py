"""Countdown: reach the target with + − × ÷ over the given numbers, each used at most once.

The stretch task: much harder for a tiny model than the quotient digit (TinyZero saw a 0.5 B model
fail where 3 B learned). The answer is checked by a whitelisting AST evaluator in exact fractions —
never `eval` — so model output cannot run code, and huge or malformed expressions score 0.
"""

from __future__ import annotations

import ast
import itertools
import random
from collections import Counter
from fractions import Fraction

from aha.tasks.base import Problem, Task, in_test_split, register_task

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
MAX_ANSWER_CHARS = 200


class ExpressionError(ValueError):
    pass


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """Value and the integers used, for an expression of integers, + − × ÷ and parentheses only."""
    if len(text) > MAX_ANSWER_CHARS:
        raise ExpressionError(f"expression longer than {MAX_ANSWER_CHARS} characters")
    if not text.isascii():
        raise ExpressionError("expression holds non-ASCII characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as err:
        raise ExpressionError(f"not an arithmetic expression: {err.__class__.__name__}") from err
    used: list[int] = []
    return _eval_node(tree.body, used), used


def _eval_node(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval_node(node.left, used), _eval_node(node.right, used)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ExpressionError("division by zero")
        return _OPS[type(node.op)](left, right)
    raise ExpressionError(f"{type(node).__name__} is not allowed (only integers, + - * / and parentheses)")


@register_task("countdown")
class CountdownTask(Task):
    reflection_markers = ("wait", "no,", "ok")

    def __init__(self, numbers: int = 3, max_number: int = 20, mix: tuple[float, float] = (0.8, 0.2)):
        if not 2 <= numbers <= 5:
            raise ValueError(f"numbers must be 2..5, got {numbers}")
        self.count, self.max_number, self.mix = numbers, max_number, tuple(mix)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rng, out = random.Random(seed), []
        while len(out) < n:
            nums = [rng.randint(1, self.max_number) for _ in range(self.count)]
            expr = _random_expression(nums, rng)
            value = evaluate_expression(expr)[0]
            if value.denominator != 1 or value <= 0:
                continue
            question = f"Using the numbers {nums}, create an equation that equals {int(value)}"
            if in_test_split(question) == (split == "test"):
                out.append(Problem(question, expr, id=f"cd-{'-'.join(map(str, nums))}-{int(value)}",
                                   meta={"numbers": nums, "target": int(value)}))
        return out

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        if answer is None:
            return 0.0, {"reason": "no answer"}
        expression = answer.split("=")[0]  # "3+4*5 = 23" is accepted; the value is recomputed
        try:
            value, used = evaluate_expression(expression)
        except ExpressionError as err:
            return 0.0, {"reason": str(err)}
        extra = Counter(used) - Counter(problem.meta["numbers"])
        if extra:
            return 0.0, {"reason": f"uses numbers not given (or more often than given): {sorted(extra.elements())}"}
        if value != problem.meta["target"]:
            return 0.0, {"reason": f"evaluates to {value}, not {problem.meta['target']}"}
        return 1.0, {"reason": "correct"}

    def corpus_document(self, problem: Problem, rng: random.Random) -> str:
        nums, target = problem.meta["numbers"], problem.meta["target"]
        attempts = []
        if rng.random() < self.mix[1]:  # a wrong first try, checked and rejected
            wrong = _random_expression(nums, rng)
            value = evaluate_expression(wrong)[0]
            if value != target:
                attempts.append(f"{wrong}={_show(value)} no, wait,")
        attempts.append(f"{problem.answer}={target} ok")
        return f" <think>{' '.join(attempts)}</think> <answer>{problem.answer}</answer>"


def _random_expression(nums: list[int], rng: random.Random) -> str:
    order = list(nums)
    rng.shuffle(order)
    text = str(order[0])
    for number in order[1:]:
        op = rng.choice(["+", "-", "*"])
        text = f"({text}){op}{number}" if op == "*" and any(s in text for s in "+-") else f"{text}{op}{number}"
    return text


def _show(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def solve(numbers: list[int], target: int) -> str | None:
    """Brute force over orders and operators (left to right with parentheses), for tests and analysis."""
    for order in itertools.permutations(numbers):
        for ops in itertools.product("+-*/", repeat=len(order) - 1):
            text = str(order[0])
            for op, number in zip(ops, order[1:]):
                text = f"({text}){op}{number}"
            try:
                if evaluate_expression(text)[0] == target:
                    return text
            except ExpressionError:
                continue
    return None
