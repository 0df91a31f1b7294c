"""The openai rollout engine: against aha serve, inside `aha sample`, and its retries."""

from __future__ import annotations

import math

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from aha.config import SampleConfig, load_config  # noqa: E402
from aha.models.loading import load_model_dir, stop_token_ids  # noqa: E402
from aha.rollout import SamplingParams, make_engine  # noqa: E402
from aha.rollout.openai_engine import OpenAIEngine, _restore_stop  # noqa: E402
from aha.rollout.torch_engine import TorchEngine  # noqa: E402
from aha.runs import read_jsonl  # noqa: E402
from aha.serve import ServerThread  # noqa: E402
from aha.serve.app import Server, create_app  # noqa: E402
from aha.stages import sample as sample_stage  # noqa: E402
from aha.tasks import get_task  # noqa: E402
from aha.template import build_prompt  # noqa: E402


@pytest.fixture(scope="module")
def endpoint(tiny_model_dir):
    torch.set_num_threads(1)
    model, tok = load_model_dir(tiny_model_dir)
    server = Server(model, tok, "tiny", max_batch=64)
    with ServerThread(create_app(server)) as http:
        yield model, tok, http.url
    server.close()


def prompts(tok, count=3):
    return [tok(build_prompt(p.question))["input_ids"] for p in get_task("division").problems("test", count, seed=2)]


def test_greedy_through_the_endpoint_equals_the_local_engine(endpoint):
    model, tok, url = endpoint
    ids = prompts(tok)
    params = SamplingParams(max_new_tokens=40, temperature=0, stop_token_ids=stop_token_ids(tok))
    remote = make_engine("openai", None, tok, base_url=url, concurrency=2).generate(ids, params, n=2)
    local = TorchEngine(model, tok).generate(ids, params, n=2)
    assert [c.prompt_index for c in remote] == [0, 0, 1, 1, 2, 2]
    assert [c.text for c in remote] == [c.text for c in local]
    assert [c.finish_reason for c in remote] == [c.finish_reason for c in local]
    assert all(math.isnan(lp) for c in remote for lp in c.logprobs) and all(len(c.logprobs) == len(c.ids) for c in remote)


def test_seeded_sampling_through_the_endpoint_repeats(endpoint):
    _, tok, url = endpoint
    engine = OpenAIEngine(None, tok, base_url=url, model_name="tiny", concurrency=3)
    params = SamplingParams(max_new_tokens=30, temperature=1.0, seed=17)
    first, again = (engine.generate(prompts(tok, 4), params, n=2) for _ in range(2))
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 2


def test_aha_sample_against_an_endpoint(endpoint, tiny_model_dir, tmp_path):
    _, _, url = endpoint
    cfg = load_config(SampleConfig, None, [f"model.path={tiny_model_dir}", "rollout.engine=openai",
                                           f"rollout.options.base_url={url}", "sample.problems=6", "sample.k=2",
                                           "rollout.max_new_tokens=32", "rollout.max_batch=4", f"run.out_dir={tmp_path}"])
    summary = sample_stage.run(cfg, tmp_path / "s")
    records = read_jsonl(tmp_path / "s" / "records.jsonl")
    assert summary["records"] == len(records) == 12
    assert records[0]["model"] == f"tiny @ {url}"
    assert {r["chunk"] for r in records} == {0, 1, 2}


def test_endpoint_config_needs_a_url():
    with pytest.raises(ValueError, match="base_url"):
        load_config(SampleConfig, None, ["rollout.engine=openai"])


class _FlakyCompletions:
    """Fails the first `failures` calls with `error`, then answers."""

    def __init__(self, failures: int, error):
        self.failures, self.error, self.calls = failures, error, 0

    def create(self, **request):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        choice = type("Choice", (), {"index": 0, "text": " <answer>4</answer>", "finish_reason": "stop"})
        return type("Response", (), {"choices": [choice]})


class _Tok:
    def decode(self, ids, skip_special_tokens=False):
        return "x" * len(ids)

    def encode(self, text, add_special_tokens=False):
        return list(range(len(text)))


REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/completions")


def _engine(completions, max_retries=3):
    client = type("Client", (), {"completions": completions})
    sleeps = []
    engine = OpenAIEngine(None, _Tok(), base_url="unused", model_name="m", client=client, max_retries=max_retries,
                          backoff=0.5, sleep=sleeps.append)
    return engine, sleeps


def test_transient_errors_are_retried_with_backoff():
    flaky = _FlakyCompletions(2, openai.APIConnectionError(request=REQUEST))
    engine, sleeps = _engine(flaky)
    out = engine.generate([[1, 2]], SamplingParams(max_new_tokens=8))
    assert out[0].text == " <answer>4</answer>" and flaky.calls == 3 and sleeps == [0.5, 1.0]
    down = _FlakyCompletions(10, openai.InternalServerError("down", response=httpx.Response(503, request=REQUEST), body=None))
    engine, sleeps = _engine(down, max_retries=2)
    with pytest.raises(RuntimeError, match="gave up after 3 attempts"):
        engine.generate([[1]], SamplingParams(max_new_tokens=8))
    assert sleeps == [0.5, 1.0]


def test_refused_requests_are_not_retried():
    refused = _FlakyCompletions(1, openai.BadRequestError("max_tokens too large", body=None,
                                                          response=httpx.Response(400, request=REQUEST)))
    engine, sleeps = _engine(refused)
    with pytest.raises(ValueError, match="refused the request \\(400\\)"):
        engine.generate([[1]], SamplingParams(max_new_tokens=8))
    assert refused.calls == 1 and sleeps == []


def test_restore_stop_puts_back_a_closing_tag_only_inside_an_open_one():
    assert _restore_stop("<think>a</think> <answer>4", "</answer>") == "<think>a</think> <answer>4</answer>"
    assert _restore_stop("<think>a</think> <answer>4</answer>", "</answer>").count("</answer>") == 1
    assert _restore_stop("no answer", "</answer>") == "no answer"


def test_eval_of_an_endpoint_equals_eval_of_the_model(endpoint, tiny_model_dir, tmp_path):
    from aha.stages import paper_eval

    settings = paper_eval.EvalSettings(problems=4, k=2, temperature=0, max_new_tokens=24, resamples=100)
    _, _, url = endpoint
    remote = paper_eval.run(url, settings, tmp_path / "remote", tokenizer_dir=str(tiny_model_dir))
    local = paper_eval.run(str(tiny_model_dir), settings, tmp_path / "local")
    assert remote["model"] == f"tiny @ {url}"
    assert {k: v for k, v in remote.items() if k not in ("model", "seconds")} == \
        {k: v for k, v in local.items() if k not in ("model", "seconds")}
    completions = lambda d: [r["completion"] for r in read_jsonl(tmp_path / d / "records.jsonl")]  # noqa: E731
    assert completions("remote") == completions("local")
