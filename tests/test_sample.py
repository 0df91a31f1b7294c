"""`aha sample`: verified records with provenance, filter counts that add up, resume without asking
twice, and the filtered rows feeding `aha sft` unchanged. Selection filters and dynamic sampling."""

import json

from typer.testing import CliRunner

from aha import runs
from aha.algo.selection import FILTERS, apply_filters, cap_per_prompt, unreadable_reason
from aha.cli import app
from aha.rewards.base import RewardBreakdown
from aha.rollout.base import Completion
from aha.stages.grpo_step import Rollout, _concat, _informative_groups

SAMPLE = ["sample.problems=12", "sample.k=3", "rollout.max_new_tokens=24", "rollout.max_batch=12",
          "run.threads=1", "run.progress=false"]


def sample(tmp_path, model_dir, *extra):
    return CliRunner().invoke(app, ["sample", str(model_dir), f"run.out_dir={tmp_path}", *SAMPLE, *extra])


def test_records_filters_add_up_and_feed_sft(tmp_path, tiny_model_dir):
    result = sample(tmp_path, tiny_model_dir, "run.name=s", "sample.filters=[readable, dedupe]")
    assert result.exit_code == 0, result.output
    run = tmp_path / "s"
    records = runs.read_jsonl(run / "records.jsonl")
    summary = json.loads((run / "summary.json").read_text())
    assert len(records) == summary["records"] == 36
    assert summary["records"] == summary["kept"] + sum(f["dropped"] for f in summary["filters"])
    assert [f["filter"] for f in summary["filters"]] == ["readable", "dedupe"]
    first = records[0]
    for key in ("prompt", "completion", "reward", "correct", "verdict", "finish_reason", "sampling", "model", "task"):
        assert key in first, key
    assert first["sampling"]["temperature"] == 0.6 and first["sampling"]["top_p"] == 0.95
    kept = runs.read_jsonl(run / "sft.jsonl")
    assert len(kept) == summary["kept"]
    if kept:  # the filtered rows are SFT input as they are
        trained = CliRunner().invoke(app, ["sft", str(run / "sft.jsonl"), f"model.path={tiny_model_dir}",
                                           f"run.out_dir={tmp_path}", "sft.epochs=1", "data.held_out=0",
                                           "run.progress=false", "run.threads=1"])
        assert trained.exit_code == 0, trained.output


def test_a_killed_sampling_run_resumes_without_asking_twice(tmp_path, tiny_model_dir):
    assert sample(tmp_path, tiny_model_dir, "run.name=straight").exit_code == 0
    assert sample(tmp_path, tiny_model_dir, "run.name=killed").exit_code == 0
    records = (tmp_path / "killed" / "records.jsonl").read_text().splitlines(keepends=True)
    # A kill after chunk 0 and part of chunk 1, mid-line: chunk 1 is sampled again, whole.
    (tmp_path / "killed" / "records.jsonl").write_text("".join(records[:14]) + records[14][:30])
    resumed = CliRunner().invoke(app, ["sample", "--resume", str(tmp_path / "killed")])
    assert resumed.exit_code == 0, resumed.output
    assert "torn last line" in resumed.output and "1 of 3 chunks already sampled" in resumed.output
    strip = lambda rows: [{k: v for k, v in r.items() if k != "verdict"} for r in rows]  # noqa: E731
    assert strip(runs.read_jsonl(tmp_path / "killed" / "records.jsonl")) == strip(
        runs.read_jsonl(tmp_path / "straight" / "records.jsonl"))


def test_sample_takes_a_run_directory_and_rejects_other_folders(tmp_path, tiny_model_dir):
    result = CliRunner().invoke(app, ["sample", str(tmp_path), f"run.out_dir={tmp_path}"])
    assert result.exit_code == 2 and "neither a model directory" in result.output
    bad = CliRunner().invoke(app, ["sample", str(tiny_model_dir), "sample.filters=[correctt]"])
    assert bad.exit_code == 2 and "valid: correct, dedupe, readable" in bad.output


def record(prompt_id, completion, correct=True, language="en"):
    return {"prompt_id": prompt_id, "completion": completion, "correct": correct, "language": language, "reward": 1.0}


def test_filters_and_their_report():
    good = "<think>8*43=344>332 too high, wait, 7*43=301<=332 ok</think> <answer>7</answer>"
    records = [
        record("a", good), record("a", " " + good + " "), record("a", good, correct=False),
        record("b", "<think>7 times 43 得 301</think> <answer>7</answer>"),  # mixed languages
        record("b", "<think>```python\nprint(7)\n```</think> <answer>7</answer>"),  # a code block
        record("b", "<think>" + "word " * 250 + "</think> <answer>7</answer>"),  # one long paragraph
        record("c", "7"),  # no reasoning-then-summary shape
        record("c", good), record("c", good.replace("7*43", "7 * 43")),
    ]
    kept, report = apply_filters(records, ["correct", "readable", "dedupe"], cap=1)
    assert [r["filter"] for r in report] == ["correct", "readable", "dedupe", "max_per_prompt=1"]
    assert [r["dropped"] for r in report] == [1, 4, 1, 1]
    assert len(records) == len(kept) + sum(r["dropped"] for r in report)
    assert [r["prompt_id"] for r in kept] == ["a", "c"]
    assert "code block" in unreadable_reason(records[4]["completion"])
    assert "paragraph of 250 words" in unreadable_reason(records[5]["completion"])
    assert cap_per_prompt(records, 2) == records[:2] + records[3:5] + records[6:8]
    assert set(FILTERS) == {"correct", "readable", "dedupe"}


def fake_rollout(rewards, group_size):
    groups = len(rewards) // group_size
    completions = [Completion(i // group_size, [i], [0.0], f"text{i}", "stop") for i in range(len(rewards))]
    scored = RewardBreakdown(list(rewards), {"accuracy": list(rewards)}, [{"i": i} for i in range(len(rewards))])
    return Rollout([f"p{g}" for g in range(groups)], [[g] for g in range(groups)], completions, scored)


def test_dynamic_sampling_keeps_informative_groups_and_reindexes_prompts():
    first = fake_rollout([1, 1, 0, 1, 0, 0], group_size=2)  # groups: equal, mixed, equal
    second = fake_rollout([0, 1, 1, 0, 1, 1], group_size=2)  # mixed, mixed, equal
    kept = [_informative_groups(first, 2), _informative_groups(second, 2)]
    assert kept[0].problems == ["p1"] and kept[1].problems == ["p0", "p1"]
    merged = _concat(kept, 2, limit=2)
    assert merged.problems == ["p1", "p0"]
    assert [c.prompt_index for c in merged.completions] == [0, 0, 1, 1]
    assert [c.text for c in merged.completions] == ["text2", "text3", "text0", "text1"]
    assert merged.scored.total == [0, 1, 0, 1] and merged.scored.components["accuracy"] == [0, 1, 0, 1]
    assert [merged.prompt_ids[c.prompt_index] for c in merged.completions] == [[1], [1], [0], [0]]


def test_dapo_preset_runs_dynamic_sampling_and_logs_the_drop_rate(tmp_path, tiny_model_dir):
    (tmp_path / "length.py").write_text("def reward(completions, **_):\n    return [float(len(c) > 30) for c in completions]\n")
    args = ["zero", f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "grpo.preset=dapo", "grpo.steps=2",
            "grpo.prompts_per_step=4", "grpo.group_size=4", "rollout.max_new_tokens=16", "eval.problems=4",
            "eval.k=1", "eval.every=0", "run.progress=false", "run.threads=1",
            f"rewards={{'{tmp_path / 'length.py'}:reward': 1.0}}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = runs.read_jsonl(tmp_path / "zero-tiny" / "metrics.jsonl")
    for row in rows:
        assert 0.0 <= row["dynamic/drop_rate"] <= 1.0 and 1 <= row["dynamic/rounds"] <= 3
        # Every trained group carries signal, unless all rounds came back uninformative.
        assert row["group_all_equal_rate"] == 0.0 or row["dynamic/rounds"] == 3


def test_cost_ledger_counts_sampled_and_prompt_tokens_at_2n_and_survives_a_kill(tmp_path, tiny_model_dir):
    from aha.models.loading import load_model_dir
    from aha.observe.cost import count_params

    assert sample(tmp_path, tiny_model_dir, "run.name=straight").exit_code == 0
    run = tmp_path / "straight"
    records = runs.read_jsonl(run / "records.jsonl")
    model, tokenizer = load_model_dir(tiny_model_dir)
    n = count_params(model)
    generated = sum(r["length"] for r in records)
    prompts = sum(len(tokenizer(r["prompt"])["input_ids"]) for r in records[::3])  # k = 3: each prompt once
    cost = json.loads((run / "summary.json").read_text())["cost"]
    phase = cost["phases"]["teacher_sampling"]
    assert cost["params"] == n and phase["calls"] == 3  # one per chunk
    assert (phase["tokens_generated"], phase["tokens_forward"], phase["tokens_trained"]) == (generated, prompts, 0)
    assert phase["flops"] == 2 * n * (generated + prompts) == cost["total"]["flops"]
    assert len(runs.read_jsonl(run / "cost.jsonl")) == 3
    # Killed while writing chunk 1's records, its cost row already written: chunk 1 is sampled
    # again and its cost row replaced, not counted twice.
    assert sample(tmp_path, tiny_model_dir, "run.name=killed").exit_code == 0
    killed = tmp_path / "killed"
    lines = (killed / "records.jsonl").read_text().splitlines(keepends=True)
    (killed / "records.jsonl").write_text("".join(lines[:14]))
    cost_rows = (killed / "cost.jsonl").read_text().splitlines(keepends=True)
    (killed / "cost.jsonl").write_text("".join(cost_rows[:2]))
    assert CliRunner().invoke(app, ["sample", "--resume", str(killed)]).exit_code == 0
    again = json.loads((killed / "summary.json").read_text())["cost"]["phases"]["teacher_sampling"]
    assert {k: again[k] for k in ("calls", "tokens_generated", "tokens_forward", "flops")} == \
        {k: phase[k] for k in ("calls", "tokens_generated", "tokens_forward", "flops")}
    assert [r["chunk"] for r in runs.read_jsonl(killed / "cost.jsonl")] == [0, 1, 2]
