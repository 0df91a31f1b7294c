"""Knights and Knaves: knights always tell the truth, knaves always lie. Who is who?

Difficulty is the number of people. Each person makes one statement about others; a puzzle is
kept only if a brute-force search over all 2^n role assignments finds exactly one consistent
assignment, so the reference answer is the unique solution. The verifier accepts the roles in
any order and phrasing ("Alice is a knight, Bob is a knave", "(1) Bob: knave (2) Alice: knight",
"Alice and Bob are knights") and scores 1 only when every person's role is named and right.
"""

from __future__ import annotations

import itertools
import random
import re
import zlib
from typing import Sequence

from aha.tasks.base import Problem, Task, in_test_split, register_task

NAMES = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack",
    "Kate", "Liam", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Ruby", "Sam", "Tina",
)
ROLES = ("knight", "knave")
# A statement is a tuple: ("is", who, role) | ("and"/"or", (who, role), (who, role))
# | ("same"/"diff", who) — "who and I are the same kind" / "different kinds".
Statement = tuple


def holds(statement: Statement, speaker: int, roles: Sequence[bool]) -> bool:
    """Truth of a statement under an assignment (`roles[i]` True = knight)."""
    kind = statement[0]
    if kind == "is":
        return roles[statement[1]] == (statement[2] == "knight")
    if kind in ("and", "or"):
        parts = [roles[w] == (r == "knight") for w, r in statement[1:]]
        return all(parts) if kind == "and" else any(parts)
    if kind == "same":
        return roles[statement[1]] == roles[speaker]
    if kind == "diff":
        return roles[statement[1]] != roles[speaker]
    raise ValueError(f"unknown statement kind {kind!r}")


def solve(statements: Sequence[Statement]) -> list[tuple[bool, ...]]:
    """Every consistent assignment: a knight's statement is true, a knave's is false."""
    n = len(statements)
    return [
        roles for roles in itertools.product((True, False), repeat=n)
        if all(holds(s, i, roles) == roles[i] for i, s in enumerate(statements))
    ]


def render(statement: Statement, names: Sequence[str]) -> str:
    kind = statement[0]
    if kind == "is":
        return f"{names[statement[1]]} is a {statement[2]}"
    if kind in ("and", "or"):
        (a, ra), (b, rb) = statement[1:]
        return f"{names[a]} is a {ra} {kind} {names[b]} is a {rb}"
    if kind == "same":
        return f"{names[statement[1]]} and I are the same kind"
    return f"{names[statement[1]]} and I are different kinds"


def _random_statement(rng: random.Random, speaker: int, n: int) -> Statement:
    others = [i for i in range(n) if i != speaker]
    kind = rng.choice(("is", "is", "and", "or", "same", "diff") if n > 2 else ("is", "same", "diff"))
    if kind in ("and", "or") and len(others) >= 2:
        a, b = rng.sample(others, 2)
        return (kind, (a, rng.choice(ROLES)), (b, rng.choice(ROLES)))
    if kind in ("same", "diff"):
        return (kind, rng.choice(others))
    return ("is", rng.choice(others), rng.choice(ROLES))


def generate(rng: random.Random, people: int) -> tuple[list[str], list[Statement], tuple[bool, ...]]:
    """A puzzle with a unique solution: (names, statements, roles)."""
    if not 2 <= people <= len(NAMES):
        raise ValueError(f"people must be in [2, {len(NAMES)}], got {people}")
    names = rng.sample(NAMES, people)
    while True:
        statements = [_random_statement(rng, i, people) for i in range(people)]
        solutions = solve(statements)
        if len(solutions) == 1:
            return names, statements, solutions[0]


def answer_text(names: Sequence[str], roles: Sequence[bool]) -> str:
    return ", ".join(f"{name} is a {'knight' if r else 'knave'}" for name, r in zip(names, roles))


_WORD = re.compile(r"[A-Za-z]+")
_NEGATIONS = {"not", "isn't", "no", "never"}


def parse_roles(text: str, names: Sequence[str]) -> tuple[dict[str, str], str]:
    """Roles named in free text, and "" or why they could not be read. Names waiting for a role
    take the next role word ("Alice and Bob are knights"); "not" before a role flips it."""
    lookup = {n.lower(): n for n in names}
    found: dict[str, str] = {}
    pending: list[str] = []
    negated = False
    for word in (w.lower() for w in _WORD.findall(text)):
        if word in lookup:
            name = lookup[word]
            # A name seen again before any role starts a new group ("Alice, Bob: Alice knight …").
            pending = [name] if name in pending else pending + [name]
            negated = False
        elif word in _NEGATIONS:
            negated = True
        elif word.rstrip("s") in ROLES and pending:
            role = word.rstrip("s")
            if negated:
                role = ROLES[1 - ROLES.index(role)]
            for name in pending:
                if found.setdefault(name, role) != role:
                    return found, f"{name} is given both roles"
            pending, negated = [], False
    missing = [n for n in names if n not in found]
    return found, (f"no role for {', '.join(missing)}" if missing else "")


@register_task("knights_knaves")
class KnightsKnavesTask(Task):
    reflection_markers = ("wait", "contradiction", "suppose", "check", "recheck")

    def __init__(self, people: int | tuple[int, int] = (3, 5)):
        self.people = (people, people) if isinstance(people, int) else tuple(people)
        if not 2 <= self.people[0] <= self.people[1] <= len(NAMES):
            raise ValueError(f"people must be an int or (min, max) within [2, {len(NAMES)}], got {people}")

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rng = random.Random(f"knights_knaves-{seed}")
        out: list[Problem] = []
        while len(out) < n:
            names, statements, roles = generate(rng, rng.randint(*self.people))
            problem = self._problem(names, statements, roles)
            if in_test_split(problem.question) == (split == "test"):
                out.append(problem)
        return out

    @staticmethod
    def _problem(names, statements, roles) -> Problem:
        said = " ".join(f'{names[i]} says: "{render(s, names)}."' for i, s in enumerate(statements))
        question = (
            f"On an island, knights always tell the truth and knaves always lie. You meet {len(names)} "
            f"inhabitants: {', '.join(names)}. {said} Who is a knight and who is a knave?"
        )
        meta = {"names": list(names), "statements": [list(map(_jsonable, s)) for s in statements],
                "roles": ["knight" if r else "knave" for r in roles]}
        return Problem(question=question, answer=answer_text(names, roles), id=f"kk-{len(names)}-{zlib.crc32(question.encode()):08x}", meta=meta)

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        if answer is None:
            return 0.0, {"reason": "no answer"}
        names, truth = problem.meta["names"], problem.meta["roles"]
        found, problem_text = parse_roles(answer[:5000], names)
        if problem_text:
            return 0.0, {"reason": problem_text}
        right = sum(found[n] == r for n, r in zip(names, truth))
        ok = right == len(names)
        return float(ok), {"reason": "correct" if ok else "wrong roles", "roles_right": right, "people": len(names)}

    def corpus_document(self, problem: Problem, rng: random.Random) -> str:
        """A check trace: each statement is tested against the solution, then the answer."""
        names, roles = problem.meta["names"], [r == "knight" for r in problem.meta["roles"]]
        steps = []
        for i, raw in enumerate(problem.meta["statements"]):
            s = _from_json(raw)
            truth = holds(s, i, roles)
            role = "knight" if roles[i] else "knave"
            steps.append(f'If {names[i]} is a {role}, "{render(s, names)}" is {"true" if truth else "false"}, consistent.')
        think = " ".join(steps) + " Every statement checks out."
        return f" <think>{think}</think> <answer>{problem.answer}</answer>"


def _jsonable(x):
    return list(x) if isinstance(x, tuple) else x


def _from_json(raw: list) -> Statement:
    return tuple(tuple(x) if isinstance(x, list) else x for x in raw)
