"""The LLM judge: robust score parsing, and the reward against a fake OpenAI-compatible endpoint."""

import re

import pytest

pytest.importorskip("openai")
fastapi = pytest.importorskip("fastapi")

from aha.config import RewardModelSection, ZeroConfig, load_config  # noqa: E402
from aha.rewards import get_reward  # noqa: E402
from aha.rewards.judge import JudgeScorer, parse_score  # noqa: E402
from aha.rewards.model import load_scorer  # noqa: E402
from aha.serve import ServerThread  # noqa: E402
from aha.tasks.general import make_problem  # noqa: E402


@pytest.mark.parametrize("reply,score", [
    ("7", 7.0), ("  9\n", 9.0), ("Score: 8", 8.0), ("score - 6.5", 6.5), ("8/10", 8.0), ("Rating: 3 out of 10", 3.0),
    ("**10**", 10.0), ("I'd give it a 4.", 4.0), ("Score: 7/10. A 10 would need the name.", 7.0),
    ("between 3 and 4", None), ("eleven", None), ("0", None), ("42", None), ("", None), (None, None),
    ("Rating: 12/10", None),
])
def test_parse_score(reply, score):
    assert parse_score(reply) == score


# The fake judge's replies, by the answer it is shown.
REPLIES = {"hello Ann": "9", "hello": "Score: 5/10", "你好 小明": "**10**", "nonsense": "I cannot grade that."}


def fake_judge_app(seen: list, fail_first: int = 0):
    app = fastapi.FastAPI()
    failures = {"left": fail_first}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "fake-judge", "object": "model", "created": 0, "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict):
        if failures["left"]:
            failures["left"] -= 1
            raise fastapi.HTTPException(503, "warming up")
        content = body["messages"][0]["content"]
        seen.append(body)
        answer = re.search(r"Answer: (.*)\n", content).group(1)
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": REPLIES[answer]}}]}

    return app


def test_the_judge_reward_scores_summaries_through_an_endpoint():
    seen = []
    with ServerThread(fake_judge_app(seen, fail_first=1)) as http:
        scorer = JudgeScorer(http.url, concurrency=2, backoff=0.01)
        en, zh = make_problem("greet", (0,), "en"), make_problem("greet", (0,), "zh")
        completions = ["<think>a long thought</think> <answer>hello Ann</answer>", "<think></think> <answer>hello</answer>",
                       "<think>想</think> <answer>你好 小明</answer>", "<think></think> <answer>nonsense</answer>",
                       "<think>no summary"]
        infos = [{} for _ in completions]
        values = get_reward("reward_model")(completions, problems=[en, en, zh, en, en], scorer=scorer, infos=infos)
    assert values == [pytest.approx(8 / 9), pytest.approx(4 / 9), 1.0, None, 0.0]
    assert "no readable score" in infos[3]["reward_model"]
    assert scorer.counts == {"requests": 4, "unparseable": 1}
    assert scorer.model_name == "fake-judge" and len(seen) == 4  # one retried 503, no call without a summary
    prompt = next(b for b in seen if "hello Ann" in b["messages"][0]["content"])["messages"][0]["content"]
    assert "Request: hello, I am Ann" in prompt and "a long thought" not in prompt  # the summary only
    assert all(b["temperature"] == 0.0 for b in seen)


def test_a_judge_is_configured_and_loaded_from_the_section():
    cfg = load_config(ZeroConfig, None, ["rewards={accuracy: 1.0, reward_model: 1.0}",
                                         "reward_model.judge_url=http://127.0.0.1:9/v1",
                                         "reward_model.judge_model=m", "reward_model.judge_max_retries=0"])
    scorer = load_scorer(cfg.reward_model)
    assert isinstance(scorer, JudgeScorer) and scorer.model_name == "m"
    with pytest.raises(RuntimeError, match="reward_model judge: gave up after 1 attempts"):
        scorer.score(["q"], ["a"])  # nothing listens there
    with pytest.raises(ValueError, match="path .* or judge_url"):
        load_scorer(RewardModelSection())
