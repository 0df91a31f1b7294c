"""The bilingual division task: prompts in two languages, traces that switch, per-language step errors."""

import random

import pytest

from aha.observe.metrics import language_mixing
from aha.stages.pretrain import build_corpus
from aha.tasks import get_task
from aha.tasks.division import check_trace
from aha.tasks.division_bilingual import noisy_check_trace, step_languages
from aha.template import think_text


def test_problems_carry_their_language_and_the_division_problems():
    task = get_task("division_bilingual")
    problems = task.problems("train", 400, seed=3)
    plain = get_task("division").problems("train", 400, seed=3)
    assert [(p.meta["a"], p.meta["b"]) for p in problems] == [(p.meta["a"], p.meta["b"]) for p in plain]
    langs = [p.meta["language"] for p in problems]
    assert set(langs) == {"en", "zh"} and 0.4 < langs.count("zh") / len(langs) < 0.6
    en = next(p for p in problems if p.meta["language"] == "en")
    zh = next(p for p in problems if p.meta["language"] == "zh")
    assert en.question == f"{en.meta['a']} divided by {en.meta['b']}"
    assert zh.question == f"{zh.meta['a']} 除以 {zh.meta['b']}"
    assert task.problems("train", 400, seed=3) == problems  # same seed, same list
    test_ids = {p.id for p in task.problems("test", 200, seed=0)}
    assert not test_ids & {p.id for p in problems}


def test_verification_is_digits_only():
    task = get_task("division_bilingual")
    p = task.problems("test", 1, seed=0)[0]
    assert task.verify(p.answer, p)[0] == 1.0
    assert task.verify("七", p)[0] == 0.0


def test_an_error_free_english_check_is_the_division_check():
    for a, b in [(645, 86), (332, 43), (100, 11), (989, 99), (110, 19)]:
        trace, answer = noisy_check_trace(a, b, ["en"] * 9, {"en": 0.0, "zh": 0.0}, random.Random(0))
        assert trace == check_trace(a, b) and answer == a // b


def test_step_errors_flip_the_verdict():
    # 645 // 86: trial quotient 8 is too high. An error at the first step accepts it.
    trace, answer = noisy_check_trace(645, 86, ["en", "en"], {"en": 1.0, "zh": 0.0}, random.Random(0))
    assert (trace, answer) == ("8*86=688<=645 ok", 8)
    trace, answer = noisy_check_trace(645, 86, ["zh", "zh"], {"en": 1.0, "zh": 0.0}, random.Random(0))
    assert (trace, answer) == ("8*86=688>645 太大, 等等, 7*86=602<=645 好", 7)
    # Switched at the second step into a language that always errs: 7 and 6 rejected, 5 accepted.
    trace, answer = noisy_check_trace(645, 86, ["zh", "en"], {"en": 1.0, "zh": 0.0}, random.Random(0))
    assert answer == 5 and trace.startswith("8*86=688>645 太大, 等等, 7*86=602>645 too high, wait,")


def test_step_languages():
    rng = random.Random(0)
    assert step_languages(3, "en", "zh", 0.0, rng) == ["en"] * 3
    switched = [step_languages(3, "en", "zh", 1.0, rng) for _ in range(300)]
    assert all(s[-1] == "zh" for s in switched)  # a switch lasts to the end of the trace
    assert {s.count("zh") for s in switched} == {1, 2, 3}


def test_corpus_mixing_and_error_rates():
    task = get_task("division_bilingual")
    corpus = build_corpus(task, 6000, seed=0)
    mixing = []
    for doc in corpus:
        prompt_language = "zh" if "除以" in doc else "en"
        mixing.append(language_mixing(think_text(doc.split("Assistant:")[-1]), prompt_language))
    rate = sum(mixing) / len(mixing)
    # 20 % of traces switch; a one-step trace (90 % of them) switches entirely.
    assert 0.15 < rate < 0.22, rate
    # Check traces written wholly in one language: the answer is wrong far more often in English.
    rng, wrong = random.Random(1), {"en": 0, "zh": 0}
    problems = get_task("division").problems("train", 2000, seed=1)
    for p in problems:
        for lang in wrong:
            steps = p.meta["a"] // 10 // (p.meta["b"] // 10) - p.meta["a"] // p.meta["b"] + 1
            _, answer = noisy_check_trace(p.meta["a"], p.meta["b"], [lang] * max(steps, 1), task.step_error, rng)
            wrong[lang] += answer != p.meta["a"] // p.meta["b"]
    assert wrong["en"] / 2000 > 0.25 and wrong["zh"] / 2000 < 0.08, wrong


@pytest.mark.parametrize("options, message", [
    ({"languages": ["en", "en"]}, "two different"), ({"languages": ["en", "xx"]}, "two different"),
    ({"switch_share": 1.5}, "switch_share"), ({"step_error": {"en": 0.1}}, "step_error"),
    ({"second_share": -0.1}, "second_share"),
])
def test_bad_options_fail_clearly(options, message):
    with pytest.raises(ValueError, match=message):
        get_task("division_bilingual", **options)


def test_tokenizer_round_trips_both_scripts(tmp_path):
    from aha.models.tokenizer import train_tokenizer

    corpus = build_corpus(get_task("division_bilingual"), 2000, seed=0)
    tok = train_tokenizer(corpus, 300)
    for text in corpus[:50]:
        assert tok.decode(tok(text)["input_ids"]) == text


@pytest.fixture(scope="module")
def tiny_bilingual_dir(tmp_path_factory):
    import torch

    from aha.stages.pretrain import pretrain
    from tests.conftest import TINY

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny-bilingual")
    pretrain(TINY, get_task("division_bilingual"), out)
    return out


def test_zero_on_the_bilingual_task_logs_mixing(tmp_path, tiny_bilingual_dir):
    import json

    from typer.testing import CliRunner

    from aha import runs
    from aha.cli import app

    args = ["zero", f"model.path={tiny_bilingual_dir}", f"run.out_dir={tmp_path}", "run.name=bi",
            "task.name=division_bilingual", "rewards={accuracy: 1.0, format: 0.2, language_consistency: 1.0}",
            "grpo.steps=2", "grpo.prompts_per_step=4", "grpo.group_size=4", "rollout.max_new_tokens=24",
            "eval.problems=8", "eval.k=2", "eval.every=1", "eval.during_problems=4", "run.progress=false",
            "run.threads=1"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = runs.read_jsonl(tmp_path / "bi" / "metrics.jsonl")
    assert all(0.0 <= r["language_mixing_rate"] <= 1.0 for r in rows)
    assert "reward/language_consistency" in rows[0] and "eval/language_mixing_rate" in rows[0]
    summary = json.loads((tmp_path / "bi" / "summary.json").read_text())
    for key in ("base_eval", "final_eval"):
        assert set(summary[key]["language_mixing"]) <= {"all", "en", "zh"} and "all" in summary[key]["language_mixing"]
