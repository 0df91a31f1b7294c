"""`aha serve`: the OpenAI API as the official client sees it, batching, seeds, disconnects."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from aha.models.loading import load_model_dir, stop_token_ids  # noqa: E402
from aha.rollout import SamplingParams, lean_qwen2  # noqa: E402
from aha.rollout.torch_engine import TorchEngine  # noqa: E402
from aha.serve import ServerThread  # noqa: E402
from aha.serve.app import Server, create_app  # noqa: E402
from aha.serve.sampler import row_uniforms, sample_rows  # noqa: E402
from aha.serve.text import ReasoningStream, SampleText, split_reasoning  # noqa: E402
from aha.tasks import get_task  # noqa: E402
from aha.template import build_prompt  # noqa: E402

NAME = "tiny"


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    torch.set_num_threads(1)
    model, tok = load_model_dir(tiny_model_dir)
    # A wide collection window, so that requests sent together are batched together.
    server = Server(model, tok, NAME, max_batch=32, reasoning_parser="deepseek_r1", collect_s=0.15)
    with ServerThread(create_app(server)) as http:
        yield server, http, openai.OpenAI(base_url=http.url, api_key="none", max_retries=0, timeout=60)
    server.close()


def questions(count: int, seed: int = 5) -> list[str]:
    return [p.question for p in get_task("division").problems("test", count, seed=seed)]


def chat(client, question: str, **kw):
    return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": question}], **kw)


def test_models_lists_the_served_model(served):
    _, _, client = served
    assert [m.id for m in client.models.list().data] == [NAME]


def test_greedy_completion_equals_the_rollout_engine(served):
    server, _, client = served
    prompt = build_prompt(questions(1)[0])
    ids = server.tokenizer(prompt)["input_ids"]
    out = client.completions.create(model=NAME, prompt=prompt, max_tokens=40, temperature=0)
    ref = TorchEngine(server.batcher.model, server.tokenizer).generate(
        [ids], SamplingParams(max_new_tokens=40, temperature=0, stop_token_ids=stop_token_ids(server.tokenizer)))[0]
    assert out.choices[0].text == ref.text
    assert out.choices[0].finish_reason == ref.finish_reason
    assert out.usage.prompt_tokens == len(ids)
    assert out.usage.completion_tokens == len(ref.ids)
    assert out.usage.total_tokens == len(ids) + len(ref.ids)


def test_chat_n_samples_and_reasoning_split(served):
    _, _, client = served
    out = chat(client, questions(1)[0], n=3, seed=11, temperature=1.0, max_tokens=48,
               extra_body={"separate_reasoning": False})
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert len({c.message.content for c in out.choices}) > 1  # n samples, not one repeated
    assert out.usage.completion_tokens >= 3
    split = chat(client, questions(1)[0], n=3, seed=11, temperature=1.0, max_tokens=48)  # server default: split
    for plain, parted in zip(out.choices, split.choices):
        reasoning, content = split_reasoning(plain.message.content)
        assert (parted.message.reasoning_content, parted.message.content) == (reasoning, content)


def test_stream_equals_the_non_streamed_completion(served):
    _, _, client = served
    question = questions(2)[1]
    whole = chat(client, question, seed=3, temperature=0.8, max_tokens=48, extra_body={"separate_reasoning": False})
    chunks = list(chat(client, question, seed=3, temperature=0.8, max_tokens=48, stream=True,
                       stream_options={"include_usage": True}, extra_body={"separate_reasoning": False}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    # Reasoning streamed apart from the answer adds up to the non-streamed split.
    parts = list(chat(client, question, seed=3, temperature=0.8, max_tokens=48, stream=True))
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in parts)
    content = "".join(c.choices[0].delta.content or "" for c in parts)
    assert (reasoning, content or None) == split_reasoning(whole.choices[0].message.content)


def test_raw_stream_ends_with_done(served):
    _, http, _ = served
    body = {"model": NAME, "prompt": build_prompt(questions(1)[0]), "max_tokens": 8, "stream": True, "n": 2}
    with httpx.stream("POST", f"{http.url}/completions", json=body, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    finished = {json.loads(line[6:])["choices"][0]["index"] for line in lines[:-1]
                if json.loads(line[6:])["choices"][0]["finish_reason"]}
    assert finished == {0, 1}


@pytest.mark.parametrize("kw, status, param", [
    ({"messages": []}, 400, "messages"),
    ({"temperature": 5}, 400, "temperature"),
    ({"n": 0}, 400, "n"),
    ({"max_tokens": 100_000}, 400, "max_tokens"),
    ({"logprobs": True}, 400, "logprobs"),
    ({"model": "gpt-4o"}, 404, "model"),
])
def test_bad_requests_get_openai_shaped_errors(served, kw, status, param):
    _, http, client = served
    body = {"model": NAME, "messages": [{"role": "user", "content": "1 // 1"}], **kw}
    response = httpx.post(f"{http.url}/chat/completions", json=body, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param and error["message"]
    with pytest.raises(openai.APIStatusError) as raised:  # and the client raises its typed error
        client.chat.completions.create(**body)
    assert raised.value.status_code == status


def test_a_bad_streaming_request_is_a_plain_4xx(served):
    _, http, _ = served
    body = {"model": NAME, "prompt": "1 // 1", "max_tokens": 100_000, "stream": True}
    response = httpx.post(f"{http.url}/completions", json=body, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"


def test_stop_strings_end_the_text(served):
    _, _, client = served
    kw = dict(model=NAME, prompt=build_prompt(questions(1)[0]), max_tokens=40, temperature=1.0, seed=21)
    full = client.completions.create(**kw)
    text = full.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]  # seeded: the same tokens come again up to the stop
    assert len(stop) == 2
    cut = client.completions.create(**kw, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"
    kept = client.completions.create(**kw, stop=[stop], extra_body={"include_stop_str_in_output": True})
    assert kept.choices[0].text == text[: text.find(stop)] + stop
    assert cut.usage.completion_tokens < full.usage.completion_tokens  # the row stopped decoding


def test_disconnect_mid_stream_frees_the_rows(served, monkeypatch):
    server, http, _ = served
    step = lean_qwen2.LeanDecoder.step

    def slow_step(self, token):  # ~5 ms a step, so the stream is still running when the client leaves
        time.sleep(0.005)
        return step(self, token)

    monkeypatch.setattr(lean_qwen2.LeanDecoder, "step", slow_step)
    before = server.batcher.stats["tokens"]
    body = {"model": NAME, "prompt": build_prompt(questions(1)[0]), "max_tokens": 150, "n": 4,
            "ignore_eos": True, "stream": True, "temperature": 1.0}
    with httpx.stream("POST", f"{http.url}/completions", json=body, timeout=60) as response:
        for count, _ in enumerate(response.iter_lines()):
            if count > 6:
                break  # leave mid-stream: the connection closes
    deadline = time.monotonic() + 10
    while server.batcher.stats["active_rows"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.batcher.stats["active_rows"] == 0
    spent = server.batcher.stats["tokens"] - before
    assert spent < 4 * 150 / 2, f"{spent} tokens decoded: the rows kept decoding after the disconnect"


def test_disconnect_while_waiting_for_a_whole_completion_frees_the_rows(served, monkeypatch):
    server, http, _ = served
    step = lean_qwen2.LeanDecoder.step
    monkeypatch.setattr(lean_qwen2.LeanDecoder, "step", lambda self, token: (time.sleep(0.005), step(self, token))[1])
    before = server.batcher.stats["tokens"]
    body = {"model": NAME, "prompt": build_prompt(questions(1)[0]), "max_tokens": 150, "n": 4, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up long before 150 slow steps
        httpx.post(f"{http.url}/completions", json=body, timeout=0.4)
    deadline = time.monotonic() + 10
    while server.batcher.stats["active_rows"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.batcher.stats["active_rows"] == 0
    assert server.batcher.stats["tokens"] - before < 4 * 150 / 2


def test_seeded_request_is_the_same_however_it_is_batched(served):
    server, _, client = served
    qs = questions(6, seed=9)

    def seeded(n=1):
        return [c.message.content for c in chat(client, qs[0], seed=1234, temperature=1.0, max_tokens=40, n=n,
                                                 extra_body={"separate_reasoning": False}).choices]

    alone = seeded()
    batches = server.batcher.stats["batches"]
    with ThreadPoolExecutor(6) as pool:  # the same request among others, in one batch, at another row
        others = [pool.submit(chat, client, q, temperature=1.0, max_tokens=40, n=2) for q in qs[1:4]]
        together = pool.submit(seeded)
        more = [pool.submit(chat, client, q, seed=5, max_tokens=30) for q in qs[4:]]
        results = [f.result() for f in [*others, *more]]
        assert together.result() == alone
    assert server.batcher.stats["batches"] - batches < 1 + len(results)  # they really were batched
    assert seeded(n=3)[0] == alone[0]  # sample 0 of n=3 draws sample 0's noise: the same text


def test_row_uniforms_depend_only_on_their_own_key():
    a = row_uniforms([7, 8, 7], [0, 0, 1], [3, 3, 3])
    assert a[0] == row_uniforms([7], [0], [3])[0] and len(set(a)) == 3
    big = row_uniforms(np.arange(20_000), np.zeros(20_000), np.zeros(20_000))
    assert 0 <= big.min() and big.max() < 1 and abs(big.mean() - 0.5) < 0.01
    assert np.histogram(big, bins=10, range=(0, 1))[0].min() > 1800  # ~2000 a bin when uniform


def test_sample_rows_honours_per_row_settings():
    logits = torch.tensor([[0.0, 2.0, 1.0], [0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    u = torch.tensor([0.999, 0.999, 0.0])
    tokens = sample_rows(logits, torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 0.5, 1.0]), u)
    # greedy; top-p 0.5 keeps only the most likely token; u = 0 never draws a zero-mass token
    assert tokens.tolist() == [1, 1, 0]
    wide = sample_rows(logits[1:2], torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.999]))
    assert wide.tolist() == [2]  # the top of the CDF: the last token with mass


class _CharTokenizer:
    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)


def test_stop_strings_are_held_back_then_cut():
    text = SampleText(_CharTokenizer(), ["STOP"], hidden_ids=set())
    sent = [text.feed(ord(c), None) for c in "abST"]
    assert "".join(sent) == "ab"  # "ST" might start "STOP": not sent yet
    assert text.feed(ord("x"), None) == "STx"  # it did not
    for c in "STO":
        text.feed(ord(c), None)
    assert text.feed(ord("P"), None) == "" and text.finish == "stop" and text.text == "abSTx"


def test_reasoning_stream_adds_up_to_the_split():
    full = " <think> 84 // 7 = 12 </think> <answer>12</answer>"
    stream, reasoning, content = ReasoningStream(), "", ""
    for end in range(1, len(full) + 1):
        r, c = stream.feed(full[:end], end == len(full))
        reasoning, content = reasoning + r, content + c
    assert (reasoning, content) == split_reasoning(full) == (" 84 // 7 = 12 ", "<answer>12</answer>")
    assert split_reasoning("no tags at all") == ("no tags at all", None)
