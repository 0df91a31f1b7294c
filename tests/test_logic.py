"""Knights and Knaves: unique solutions, a brute-force solver, a phrasing-tolerant verifier."""

from __future__ import annotations

import itertools
import random

import pytest

from aha.tasks.logic import KnightsKnavesTask, generate, holds, parse_roles, solve
from aha.template import parse_response


@pytest.mark.parametrize("people", [2, 3, 4, 5, 6, 7])
def test_generated_puzzles_have_the_unique_solution(people):
    rng = random.Random(people)
    for _ in range(15):
        names, statements, roles = generate(rng, people)
        assert len(names) == people == len(set(names))
        consistent = [r for r in itertools.product((True, False), repeat=people)
                      if all(holds(s, i, r) == r[i] for i, s in enumerate(statements))]
        assert consistent == [roles] == solve(statements)


def test_solver_on_a_classic():
    # A says "B is a knave", B says "A and I are the same kind": A knight, B knave.
    assert solve([("is", 1, "knave"), ("same", 0)]) == [(True, False)]


def test_problems_deterministic_split_and_difficulty():
    task = KnightsKnavesTask(people=(3, 5))
    train, again = task.problems("train", 30, 0), task.problems("train", 30, 0)
    assert train == again and train != task.problems("train", 30, 1)
    test = task.problems("test", 10, 0)
    assert not {p.question for p in train} & {p.question for p in test}
    assert all(3 <= len(p.meta["names"]) <= 5 for p in train + test)
    with pytest.raises(ValueError):
        KnightsKnavesTask(people=1)


@pytest.fixture
def problem():
    return KnightsKnavesTask(people=3).problems("train", 1, 3)[0]


def _phrasings(names, roles):
    pairs = list(zip(names, roles))
    yield ", ".join(f"{n} is a {r}" for n, r in pairs)
    yield " ".join(f"({i}) {n}: {r}" for i, (n, r) in enumerate(reversed(pairs), start=1))
    yield "; ".join(f"{n.lower()} - {r.upper()}" for n, r in pairs)
    knights = [n for n, r in pairs if r == "knight"]
    knaves = [n for n, r in pairs if r == "knave"]
    parts = []
    if knights:
        parts.append(" and ".join(knights) + (" are knights" if len(knights) > 1 else " is a knight"))
    if knaves:
        parts.append(" and ".join(knaves) + (" are knaves" if len(knaves) > 1 else " is a knave"))
    yield ". ".join(parts) + "."
    yield ", ".join(f"{n} is {'not a knave' if r == 'knight' else 'not a knight'}" for n, r in pairs)


def test_verifier_accepts_any_order_and_phrasing(problem):
    task = KnightsKnavesTask()
    names, roles = problem.meta["names"], problem.meta["roles"]
    for text in _phrasings(names, roles):
        assert task.verify(text, problem) == (1.0, {"reason": "correct", "roles_right": 3, "people": 3}), text


def test_verifier_rejects_wrong_missing_or_contradictory(problem):
    task = KnightsKnavesTask()
    names, roles = problem.meta["names"], problem.meta["roles"]
    flipped = ["knave" if r == "knight" else "knight" for r in roles]
    assert task.verify(", ".join(f"{n} is a {r}" for n, r in zip(names, flipped)), problem)[0] == 0.0
    assert "no role" in task.verify(f"{names[0]} is a {roles[0]}", problem)[1]["reason"]
    both = ", ".join(f"{n} is a knight, {n} is a knave" for n in names)
    assert task.verify(both, problem)[1]["reason"].endswith("both roles")
    assert task.verify(None, problem)[0] == 0.0


def test_parse_roles_plural_groups():
    found, why = parse_roles("Alice and Bob are knights while Carol is a knave", ["Alice", "Bob", "Carol"])
    assert why == "" and found == {"Alice": "knight", "Bob": "knight", "Carol": "knave"}


def test_corpus_document_is_r1_shaped_and_right():
    task = KnightsKnavesTask(people=(2, 6))
    for problem in task.problems("train", 20, 5):
        doc = task.corpus_document(problem, random.Random(0))
        parsed = parse_response(doc)
        assert parsed.well_formed, doc
        assert task.verify(parsed.answer, problem)[0] == 1.0
