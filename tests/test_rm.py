"""`aha rm` and the reward_model reward: the Bradley–Terry loss against a reference, the stage end to
end on a tiny model (learns, loads in transformers, resumes exactly), summary-only scoring, the
GRPO plumbing, and config errors before any model loads."""

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

from aha import runs
from aha.algo.objectives import OBJECTIVES
from aha.cli import app
from aha.config import ConfigError, RewardModelSection, RMConfig, ZeroConfig, load_config
from aha.rewards import combine, get_reward
from aha.rewards.model import NO_SUMMARY, load_scorer
from aha.tasks import get_task

RM_FAST = ["rm.pairs=600", "rm.held_out_pairs=200", "rm.epochs=6", "rm.lr=3e-3", "rm.batch_pairs=32",
           "rm.agreement_problems=20", "run.progress=false", "run.threads=1", "run.save_every=10"]
STEPS = 6 * 19  # 600 pairs in batches of 32: 19 steps an epoch


def test_bradley_terry_equals_the_reference_and_adds_over_micro_batches():
    chosen = torch.tensor([2.0, 0.0, -1.0, 0.5], requires_grad=True)
    rejected = torch.tensor([1.0, 0.0, 1.0, -0.5])
    bt = OBJECTIVES["bradley_terry"]
    loss, stats = bt(chosen, rejected, n_pairs=4)
    # −log σ(x) = log(1 + e^−x), by hand for the gaps 1, 0, −2, 1
    reference = (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(2)) + math.log1p(math.exp(-1))) / 4
    assert loss.item() == pytest.approx(reference, rel=1e-6)
    assert stats == {"accuracy": pytest.approx(0.5), "margin": pytest.approx((1 + 0 - 2 + 1) / 4)}
    loss.backward()
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert chosen.grad.tolist() == pytest.approx([-(1 - sigmoid(g)) / 4 for g in (1, 0, -2, 1)], rel=1e-6)
    first, _ = bt(chosen[:1], rejected[:1], n_pairs=4)
    rest, _ = bt(chosen[1:], rejected[1:], n_pairs=4)
    assert (first + rest).item() == pytest.approx(loss.item())


def rm_cli(*args):
    return CliRunner().invoke(app, ["rm", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def rm_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm")
    result = rm_cli(f"model.path={tiny_model_dir}", f"run.out_dir={out}", "run.name=rm", *RM_FAST)
    assert result.exit_code == 0, result.output
    return out / "rm"


def test_aha_rm_learns_held_out_preferences_and_writes_a_transformers_model(rm_run):
    summary = json.loads((rm_run / "summary.json").read_text())
    # Measured on this tiny (2-layer, 32-wide, barely pretrained) body, seed 0: 0.54 → 0.665 on 200
    # held-out pairs (seeds 1, 2: 0.53 → 0.605, 0.57 → 0.545); it learns the surface of a good summary
    # (short, in the prompt's language), hardly its content.
    assert summary["held_out_accuracy_end"] >= 0.6 and summary["held_out_accuracy_end"] > summary["held_out_accuracy_start"]
    assert summary["pairs_train"] == 600 and summary["pairs_held_out"] == 200 and summary["steps"] == STEPS
    assert summary["rubric_agreement_end"]["spearman"] > summary["rubric_agreement_start"]["spearman"]
    model = AutoModelForSequenceClassification.from_pretrained(rm_run / "model")
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    rows = runs.read_jsonl(rm_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1)) and "held_out_accuracy" in rows[18]


def test_the_reward_scores_the_summary_only(rm_run):
    scorer = load_scorer(RewardModelSection(path=str(rm_run / "model")))
    task = get_task("mixture", parts={"division_bilingual": 0.5, "general_bilingual": 0.5})
    problems = task.problems("test", 4, seed=0)
    general = next(p for p in problems if p.meta["kind"] == "general")
    reasoning = next(p for p in problems if p.meta["kind"] == "reasoning")
    completions = [f"<think></think> <answer>{general.answer}</answer>",
                   f"<think>a long and winding thought, 等等</think> <answer>{general.answer}</answer>",
                   f"<think>something else</think> {general.answer}",  # R1's own format: after </think>
                   "<think>never finished", f"<think>x</think> <answer>{reasoning.answer}</answer>"]
    values = get_reward("reward_model")(completions, problems=[general] * 4 + [reasoning], scorer=scorer)
    # The same text reaches the model whatever the thought (equal up to batch-position rounding).
    assert 0.0 < values[0] < 1.0
    assert values[1] == pytest.approx(values[0], abs=1e-6) and values[2] == pytest.approx(values[0], abs=1e-6)
    assert values[3] == NO_SUMMARY and values[4] is None
    scored = combine({"accuracy": 1.0, "reward_model": 1.0}, completions[-2:], problems=[general, reasoning],
                     task=task, scorer=scorer)
    assert scored.components == {"accuracy": [None, 1.0], "reward_model": [NO_SUMMARY, None]}
    with pytest.raises(ValueError, match="reward_model.path"):
        get_reward("reward_model")(completions[:1], problems=[general])


def test_aha_rm_resumes_to_the_uninterrupted_model(rm_run, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(rm_run, cut)
    for name in ("model", "summary.json", f"checkpoint-{STEPS}"):  # as if stopped after step 110's checkpoint
        shutil.rmtree(cut / name) if (cut / name).is_dir() else (cut / name).unlink()
    result = rm_cli("--resume", str(cut))
    assert result.exit_code == 0, result.output
    before, after = load_file(str(rm_run / "model" / "model.safetensors")), load_file(str(cut / "model" / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [r["step"] for r in runs.read_jsonl(cut / "metrics.jsonl")] == list(range(1, STEPS + 1))


def test_a_pairs_file_with_a_bad_row_names_file_line_and_field(tiny_model_dir, tmp_path):
    good = {"prompt": "User: say 3. Assistant:", "chosen": "<think></think> <answer>3</answer>", "rejected": "4"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl, line 2: missing field 'rejected'"):
        from aha.stages import rm

        rm.run(load_config(RMConfig, None, [f"model.path={tiny_model_dir}", f"data.path={path}",
                                            f"run.out_dir={tmp_path}", "run.progress=false"]), tmp_path / "r")
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "chosen": 3}) + "\n")
    result = rm_cli(f"model.path={tiny_model_dir}", f"data.path={path}", f"run.out_dir={tmp_path}")
    assert result.exit_code == 2 and "line 2: field 'chosen' must be text, got int" in result.output


def test_aha_rm_trains_on_a_pairs_file(tiny_model_dir, tmp_path):
    from aha.tasks.general import preference_pairs

    path = tmp_path / "pairs.jsonl"
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in preference_pairs(40, seed=3)]
    rows[5]["rejected"] = rows[5]["chosen"]  # nothing to tell apart: dropped, reported
    rows[6]["chosen"] = "<think>cut short"  # no summary: dropped, reported
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = rm_cli(f"model.path={tiny_model_dir}", f"data.path={path}", f"run.out_dir={tmp_path}", "run.name=file",
                    "data.held_out=0.25", "rm.epochs=1", "rm.batch_pairs=8", "run.progress=false", "run.threads=1")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "file" / "summary.json").read_text())
    assert (summary["pairs_train"], summary["pairs_held_out"], summary["pairs_dropped"]) == (28, 10, 2)
    assert "line 6: chosen and rejected have the same summary" in summary["dropped"][0]
    assert "line 7: field 'chosen' has no summary" in summary["dropped"][1]
    assert summary["rubric_agreement_end"] is None and summary["steps"] == 4
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "file" / "model").config.num_labels == 1


def test_grpo_on_a_mixture_with_the_reward_model(rm_run, tiny_model_dir, tmp_path):
    rewards = "rewards={accuracy: 1.0, format: 0.2, reward_model: 1.0}"
    args = ["zero", f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "run.name=all", rewards,
            f"reward_model.path={rm_run / 'model'}", "task.name=mixture",
            "task.options={parts: {division: 0.5, general_bilingual: 0.5}}", "grpo.steps=2",
            "grpo.prompts_per_step=4", "grpo.group_size=2", "rollout.max_new_tokens=16", "eval.problems=8",
            "eval.k=1", "eval.every=1", "eval.during_problems=4", "run.progress=false", "run.threads=1"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = runs.read_jsonl(tmp_path / "all" / "metrics.jsonl")
    assert all(0.0 <= r["reward/reward_model"] <= 1.0 for r in rows)
    assert "eval/reward_model" in rows[0] and "eval/helpfulness" in rows[0]
    final = json.loads((tmp_path / "all" / "summary.json").read_text())["final_eval"]
    assert final["general"]["problems"] == 4 and 0.0 <= final["general"]["reward_model"] <= 1.0


@pytest.mark.parametrize("overrides,message", [
    (["rewards={accuracy: 1.0, reward_model: 1.0}"], "reward_model.path: required when rewards weighs reward_model"),
    (["reward_model.path=/nonexistent"], "reward_model.path: /nonexistent: not a directory"),
    (["reward_model.judge_url=localhost:8000"], "reward_model.judge_url: expected an http"),
    (["reward_model.judge_url=http://x/v1", "reward_model.judge_prompt=rate it"], "judge_prompt: must contain"),
    (["reward_model.judge_url=http://x/v1", "reward_model.path=/tmp"], "set path .* or judge_url .*, not both"),
])
def test_reward_model_config_errors_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ZeroConfig, None, overrides)


def test_config_errors_come_before_torch_is_imported():
    code = ("import sys\nfrom aha.config import ConfigError, ZeroConfig, RMConfig, load_config\n"
            "for cls, o in ((ZeroConfig, ['rewards={reward_model: 1.0}']), (RMConfig, ['rm.epochs=0'])):\n"
            "    try:\n        load_config(cls, None, o)\n    except ConfigError as e:\n        print(e)\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("reward_model.path: required") and lines[1].startswith("rm.epochs: expected")
    assert lines[2] == "False False", done.stderr


def test_rm_config_defaults_find_the_shipped_bilingual_base():
    from aha.models.loading import shipped_base_dir

    cfg = load_config(RMConfig, None, [])
    assert cfg.task.name == "division_bilingual" and shipped_base_dir(cfg.pretrain, cfg.task) is not None
    with pytest.raises(ConfigError, match="data.path: nope.jsonl: no such file"):
        load_config(RMConfig, None, ["data.path=nope.jsonl"])
    with pytest.raises(ConfigError, match="rm.pairs_options: .*unexpected keyword argument 'color'"):
        load_config(RMConfig, None, ["rm.pairs_options={color: red}"])
