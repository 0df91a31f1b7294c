"""A GRPO run fed hostile completions keeps going: the verifiers contain them and score 0."""

import itertools

import pytest

from aha.config import ZeroConfig, load_config
from aha.rollout.base import Completion
from aha.events import Events
from aha.stages import grpo

HOSTILE_MATH = [
    "<think>x</think> <answer>" + "10^" * 40 + "10</answer>",
    "<think>x</think> <answer>" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "</answer>",
    "<think>x</think> <answer>" + "9" * 200_000 + "</answer>",
    "<think>x</think> <answer>\\begin{ \\left( ]] \\boxed{</answer>",
    "<think>x</think> <answer>(10^{100})!</answer>",
]
HOSTILE_CODE = [
    "```python\nimport socket\nsocket.create_connection(('1.1.1.1', 80))\n```",
    "```python\nimport os\nwhile True: os.fork()\n```",
    "```python\nx = 'a' * (1 << 40)\n```",
    "```python\nwhile True: pass\n```",
    "```python\nimport os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n```",
    "```python\nprint('x' * (1 << 30))\n```",
]


@pytest.mark.parametrize("task_name,hostile", [("gsm8k", HOSTILE_MATH), ("humaneval", HOSTILE_CODE)])
def test_trainer_survives_hostile_completions(tmp_path, tiny_model_dir, monkeypatch, task_name, hostile):
    cfg = load_config(ZeroConfig, None, [
        f"task.name={task_name}", f"run.out_dir={tmp_path}", f"model.path={tiny_model_dir}", "grpo.prompts_per_step=2", "grpo.group_size=3",
        "rollout.max_new_tokens=8", "run.threads=1", "rewards={accuracy: 1.0, format: 0.2}",
    ])
    trainer = grpo.start(cfg, tmp_path / "hostile", Events())
    texts = itertools.cycle(hostile)

    def hostile_generate(prompts, params, n=1):
        out = []
        for i in range(len(prompts) * n):
            text = next(texts)
            ids = trainer.tokenizer(text[:2000])["input_ids"][:8] or [trainer.tokenizer.eos_token_id]
            out.append(Completion(i // n, ids, [-1.0] * len(ids), text, "stop"))
        return out

    monkeypatch.setattr(trainer.engine, "generate", hostile_generate)
    for step in (1, 2):
        row, _ = grpo.run_step(trainer, step)
        assert row["reward/accuracy"] == 0.0
        assert row["seconds/reward"] < 60
