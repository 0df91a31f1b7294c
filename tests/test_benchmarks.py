"""Benchmarks as tasks: packaged data, users' JSONL/parquet in the same shapes, clear errors."""

from __future__ import annotations

import json

import pytest

from aha.tasks.base import TASKS
from aha.tasks.gsm8k import Gsm8kTask, gsm8k_reference
from aha.tasks.math import Aime24Task, Amc23Task, Math500Task, MathJsonlTask
from aha.tasks.records import RecordError
from aha.template import R1_MATH_SUFFIX


def test_registered_names():
    assert {"gsm8k", "math500", "aime24", "amc23", "math_jsonl"} <= set(TASKS)


@pytest.mark.parametrize("task, split, rows", [
    (Math500Task, "test", 500), (Aime24Task, "test", 30), (Amc23Task, "test", 40),
    (Gsm8kTask, "test", 1319), (Gsm8kTask, "train", 7473),
])
def test_packaged_sizes_and_references(task, split, rows):
    problems = task().problems(split, 0, 0)
    assert len(problems) == rows
    assert all(p.question and p.answer for p in problems)
    assert len({p.id for p in problems}) == rows


def test_reference_answers_are_extracted():
    assert Gsm8kTask().problems("test", 0, 0)[0].answer == "18"
    assert gsm8k_reference("so 1,000 in all\n#### 1,000") == "1000"
    assert Amc23Task().problems("test", 0, 0)[0].answer == "27"  # stored as 27.0
    assert Math500Task().problems("test", 0, 0)[0].answer == r"\left( 3, \frac{\pi}{2} \right)"


def test_problems_deterministic_and_seeded():
    task = Math500Task()
    a, b, c = task.problems("test", 20, 1), task.problems("test", 20, 1), task.problems("test", 20, 2)
    assert a == b and a != c
    assert len(task.problems("test", 1200, 0)) == 1200  # more than the file: epochs, reshuffled


def test_prompt_styles():
    plain = Math500Task().problems("test", 1, 0)[0]
    r1 = Math500Task(prompt_style="r1").problems("test", 1, 0)[0]
    assert r1.question == plain.question + "\n" + R1_MATH_SUFFIX
    with pytest.raises(ValueError, match="prompt_style"):
        Math500Task(prompt_style="chatty")


def test_missing_split_is_explained():
    with pytest.raises(ValueError, match="no 'train' split; available: test"):
        Math500Task().problems("train", 5, 0)


def test_user_jsonl_open_r1_columns(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"problem": "What is 1/2 + 1/4?", "solution": r"It is \boxed{\frac{3}{4}}."},
            {"question": "2+2?", "answer": 4.0, "level": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    task = MathJsonlTask(path=str(path), prompt_style="r1")
    problems = task.problems("train", 0, 0)
    assert [p.answer for p in problems] == [r"\frac{3}{4}", "4"]
    assert problems[1].meta == {"level": 1}
    assert task.verify(r"\boxed{0.75}", problems[0])[0] == 1.0
    assert [p.answer for p in task.problems("test", 0, 0)] == [p.answer for p in problems]  # one file, both splits


def test_user_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"problem": ["1+1?", "3*3?"], "answer": ["2", "9"]}), path)
    problems = MathJsonlTask(path=str(path)).problems("train", 0, 0)
    assert [p.answer for p in problems] == ["2", "9"]


@pytest.mark.parametrize("content, message", [
    ('{"problem": "x", "answer": "1"}\n{"problem": "y"\n', r"line 2: invalid JSON"),
    ('{"problem": "x", "answer": "1"}\n{"problem": "y"}\n', r"line 2: missing field 'answer'"),
    ('{"answer": "1"}\n', r"line 1: missing field 'problem' or 'question' or 'prompt'"),
    ('[1, 2]\n', r"line 1: expected a JSON object"),
    ('{"problem": "x", "answer": [1]}\n', r"line 1: field 'answer' must be text or a number"),
])
def test_bad_input_names_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(RecordError, match=message) as err:
        MathJsonlTask(path=str(path)).problems("train", 0, 0)
    assert "bad.jsonl" in str(err.value)


def test_missing_file_and_path():
    with pytest.raises(RecordError, match="file not found"):
        MathJsonlTask(path="/nonexistent/x.jsonl").problems("train", 1, 0)
    with pytest.raises(ValueError, match="needs path="):
        MathJsonlTask()


def test_gsm8k_user_file_bare_numbers(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1,234"}) + "\n")
    problem = Gsm8kTask(path=str(path)).problems("train", 0, 0)[0]
    assert Gsm8kTask().verify("1234", problem)[0] == 1.0
