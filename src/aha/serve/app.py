"""The OpenAI-compatible HTTP API over the batcher: `/v1/chat/completions`, `/v1/completions`,
`/v1/models`, with streaming (SSE ending in `data: [DONE]`), `n`, `stop`, `seed` and `usage`.

A request becomes one `Job` per prompt; the batcher's worker thread hands each job's tokens to this
event loop (`call_soon_threadsafe`), where they become text (`aha.serve.text`). A client that
disconnects mid-stream cancels its jobs, and their rows leave the batch at the next decode step.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aha.models.loading import stop_token_ids
from aha.serve.batcher import Batcher, Job
from aha.serve.protocol import ChatRequest, CompletionRequest, OpenAIError, validation_error
from aha.serve.text import ReasoningStream, SampleText, split_reasoning

DEFAULT_MAX_TOKENS = 512  # chat requests without max_tokens: at most this, and what the context leaves
DISCONNECT_POLL_S = 0.25  # how often a non-streamed request checks that its client is still there


class Server:
    """The model, its tokenizer and the batcher, and what requests need to know about them."""

    def __init__(self, model, tokenizer, name: str, max_batch: int = 64, reasoning_parser: str | None = None,
                 bf16: bool = False, collect_s: float = 0.005, max_cohorts: int = 4):
        self.tokenizer, self.name = tokenizer, name
        self.reasoning = reasoning_parser == "deepseek_r1"
        if reasoning_parser not in (None, "deepseek_r1"):
            raise ValueError(f"unknown reasoning parser {reasoning_parser!r}; valid: deepseek_r1")
        self.context = getattr(model.config, "max_position_embeddings", None) or 1 << 30
        # EOS, and `</answer>` where it is one token (aha's sampling stops there too: the R1 format is complete).
        self.stop_ids = frozenset({tokenizer.eos_token_id, *stop_token_ids(tokenizer)} - {None})
        self.hidden_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        self.batcher = Batcher(model, tokenizer, max_batch=max_batch, bf16=bf16, collect_s=collect_s,
                               max_cohorts=max_cohorts)
        self.rng = random.Random()  # unseeded requests draw a seed here
        self.created = int(time.time())

    def close(self) -> None:
        self.batcher.close()


@dataclass
class _Call:
    """One request in flight: its jobs (one per prompt), the per-sample text state, usage."""

    request: ChatRequest | CompletionRequest
    prompts: list[list[int]]
    chat: bool
    reasoning: bool
    jobs: list[Job] = field(default_factory=list)
    texts: list[SampleText] = field(default_factory=list)  # by choice index = prompt · n + sample
    splits: list[ReasoningStream] = field(default_factory=list)

    @property
    def usage(self) -> dict:
        prompt = sum(len(p) for p in self.prompts)
        completion = sum(t.tokens for t in self.texts)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app(server: Server) -> FastAPI:
    app = FastAPI(title="aha serve")
    app.state.server = server

    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, err: OpenAIError):
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError):
        error = validation_error(err.errors())
        return JSONResponse(error.body(), status_code=error.status)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": server.name, "object": "model", "created": server.created,
                                            "owned_by": "aha", "max_model_len": server.context}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        return await _respond(server, _chat_call(server, body), request)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await _respond(server, _completion_call(server, body), request)

    return app


def _chat_call(server: Server, body: ChatRequest) -> _Call:
    _check_common(server, body)
    tok = server.tokenizer
    if not getattr(tok, "chat_template", None):
        raise OpenAIError("this model has no chat template; use /v1/completions", param="messages")
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # The template writes any BOS itself; the tokenizer must not add another.
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    reasoning = server.reasoning if body.separate_reasoning is None else body.separate_reasoning
    return _Call(body, [prompt], chat=True, reasoning=reasoning)


def _completion_call(server: Server, body: CompletionRequest) -> _Call:
    _check_common(server, body)
    prompt = body.prompt
    if isinstance(prompt, list) and all(isinstance(p, int) for p in prompt):
        vocab = len(server.tokenizer)
        if any(not 0 <= p < vocab for p in prompt):
            raise OpenAIError(f"prompt: token ids must be in [0, {vocab})", param="prompt")
        prompts = [list(prompt)]
    else:
        prompts = [server.tokenizer(p)["input_ids"] for p in ([prompt] if isinstance(prompt, str) else prompt)]
    return _Call(body, prompts, chat=False, reasoning=False)


def _check_common(server: Server, body) -> None:
    body.refuse_unsupported()
    if body.model != server.name:
        raise OpenAIError(f"the model '{body.model}' does not exist; this server serves '{server.name}'",
                          status=404, param="model", code="model_not_found")
    if body.n > server.batcher.max_batch:
        raise OpenAIError(f"n: at most {server.batcher.max_batch} (the server's batch)", param="n")
    vocab = len(server.tokenizer)
    if any(not 0 <= t < vocab for t in body.stop_token_ids):
        raise OpenAIError(f"stop_token_ids: token ids must be in [0, {vocab})", param="stop_token_ids")


def _submit(server: Server, call: _Call, queue: asyncio.Queue) -> None:
    """One job per prompt, token limits checked against the context, all queued at once."""
    body, loop = call.request, asyncio.get_running_loop()
    seed = body.seed if body.seed is not None else server.rng.getrandbits(63)
    # ignore_eos turns off the server's default stops (EOS and `</answer>`): decode to max_tokens.
    stop_ids = frozenset(body.stop_token_ids) | (frozenset() if body.ignore_eos else server.stop_ids)
    for index, prompt in enumerate(call.prompts):
        room = server.context - len(prompt)
        limit = body.token_limit or min(DEFAULT_MAX_TOKENS, room)
        if not prompt or room < 1 or limit > room:
            raise OpenAIError(f"this model's maximum context length is {server.context} tokens; the prompt has "
                              f"{len(prompt)} and {limit} more were asked for", param="max_tokens",
                              code="context_length_exceeded")

        def sink(item, index=index):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (index, item))
            except RuntimeError:  # the event loop is gone (shutdown): nobody is listening
                pass

        temperature = 1.0 if body.temperature is None else body.temperature
        call.jobs.append(Job(prompt, body.n, limit, temperature, 1.0 if body.top_p is None else body.top_p,
                             seed & (2**64 - 1), stop_ids, sink))
    for _ in range(len(call.prompts) * body.n):
        call.texts.append(SampleText(server.tokenizer, body.stop, server.hidden_ids, body.include_stop_str_in_output))
        call.splits.append(ReasoningStream())
    for job in call.jobs:
        server.batcher.submit(job)


async def _deltas(call: _Call, queue: asyncio.Queue) -> AsyncIterator[tuple[int, str, str | None]]:
    """(choice index, new text, finish reason or None) as tokens arrive; cancels what is left of
    the request's jobs however it ends (done, a stop string, a disconnect)."""
    n = call.request.n
    try:
        open_choices = len(call.texts)
        while open_choices:
            index, step = await queue.get()
            if isinstance(step, BaseException):
                raise OpenAIError(f"generation failed: {step}", status=500, type="server_error")
            for sample, token, finish in step:
                text = call.texts[index * n + sample]
                if text.finish is not None:
                    continue
                delta = text.feed(token, finish)
                if text.finish is not None:
                    call.jobs[index].cancel(sample)  # a stop string: the row need not decode on
                    open_choices -= 1
                yield index * n + sample, delta, text.finish
    finally:
        for job in call.jobs:
            job.cancel()


async def _respond(server: Server, call: _Call, request: Request):
    queue: asyncio.Queue = asyncio.Queue()
    _submit(server, call, queue)  # a request error raises here, as a plain 4xx before any response
    if call.request.stream:  # a disconnect cancels the stream's generator, which cancels the jobs
        return StreamingResponse(_sse(server, call, queue), media_type="text/event-stream")
    drain = asyncio.ensure_future(_drain(call, queue))
    while not drain.done():  # nobody tells a non-streamed handler that its client left: ask
        await asyncio.wait({drain}, timeout=DISCONNECT_POLL_S)
        if not drain.done() and await request.is_disconnected():
            drain.cancel()  # `_deltas` cancels the jobs on its way out
            return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    drain.result()  # a generation failure raises here (a 500)
    return JSONResponse(_final_body(server, call))


async def _drain(call: _Call, queue: asyncio.Queue) -> None:
    async for _ in _deltas(call, queue):
        pass


def _final_body(server: Server, call: _Call) -> dict:
    choices = []
    for index, text in enumerate(call.texts):
        choice = {"index": index, "finish_reason": text.finish, "logprobs": None}
        if call.chat:
            message = {"role": "assistant", "content": text.text}
            if call.reasoning:
                message["reasoning_content"], message["content"] = split_reasoning(text.text)
            choice["message"] = message
        else:
            choice["text"] = text.text
        choices.append(choice)
    return {"id": _id(call), "object": "chat.completion" if call.chat else "text_completion",
            "created": int(time.time()), "model": server.name, "choices": choices, "usage": call.usage}


async def _sse(server: Server, call: _Call, queue: asyncio.Queue) -> AsyncIterator[str]:
    """The stream's events: chat opens with each choice's role, then one event per text delta;
    `usage` on request; a failure mid-stream as an error event; always `data: [DONE]` last."""
    ident, created = _id(call), int(time.time())
    kind = "chat.completion.chunk" if call.chat else "text_completion"

    def event(choices: list, **extra) -> str:
        chunk = {"id": ident, "object": kind, "created": created, "model": server.name, "choices": choices, **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    try:
        if call.chat:
            yield event([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                         for i in range(len(call.texts))])
        async for index, delta, finish in _deltas(call, queue):
            for choice in _choice_chunks(call, index, delta, finish):
                yield event([choice])
        if call.request.include_usage:
            yield event([], usage=call.usage)
    except OpenAIError as err:
        yield f"data: {json.dumps(err.body())}\n\n"
    yield "data: [DONE]\n\n"


def _choice_chunks(call: _Call, index: int, delta: str, finish: str | None) -> list[dict]:
    """The stream choices for one sample's new text: content (or reasoning and content) deltas."""
    if not call.chat:
        return [{"index": index, "text": delta, "finish_reason": finish, "logprobs": None}]
    if call.reasoning:
        reasoning, content = call.splits[index].feed(call.texts[index].text, finish is not None)
        message = {k: v for k, v in (("reasoning_content", reasoning), ("content", content)) if v}
    else:
        message = {"content": delta} if delta else {}
    if not message and finish is None:
        return []
    return [{"index": index, "delta": message, "finish_reason": finish, "logprobs": None}]


def _id(call: _Call) -> str:
    return f"{'chatcmpl' if call.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
