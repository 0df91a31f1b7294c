"""Rollouts from any OpenAI-compatible endpoint: `aha serve`, vLLM, SGLang, a hosted teacher.

The engine contract speaks token ids; endpoints speak text. So the engine holds a tokenizer (the
policy's, or the teacher's when distilling): prompts are decoded to text and sent to
`/v1/completions` (or sent as ids, `prompt_ids=True`, where the server takes token-id prompts, as
aha serve and vLLM do), and completions are encoded back to ids. What that costs:

- `Completion.ids` are the local tokenizer's ids for the returned text, not necessarily the ids
  the server sampled (a different tokenizer, or a merge across the prompt boundary);
- `Completion.logprobs` are unavailable: they are NaN, so anything that needs the sampler's
  log-probs (an on-policy update's old log-probs) fails loudly instead of silently using zeros.
  Sampling (`aha sample`, evaluation, distillation) needs text and verdicts only.

Requests go out `concurrency` at a time, one per prompt with the API's `n`; each is seeded with
`params.seed + prompt index`, so a server that seeds per request (aha serve) returns the same
samples however the calls interleave. Connection errors, timeouts, 429 and 5xx are retried with
exponential back-off; any other error (a 4xx) is raised at once with the server's message.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

from aha.rollout.base import Completion, RolloutEngine, SamplingParams


class OpenAIEngine(RolloutEngine):
    def __init__(self, model=None, tokenizer=None, *, base_url: str, model_name: str = "", api_key: str = "none",
                 concurrency: int = 8, timeout: float = 300.0, max_retries: int = 5, backoff: float = 1.0,
                 prompt_ids: bool = False, extensions: bool = True, client=None, sleep=time.sleep,
                 max_batch: int = 0, bf16: bool = False):
        """`model`, `max_batch`, `bf16` are unused (the endpoint holds the model and decides how it
        batches); `model_name` defaults to the endpoint's first listed model. `extensions`: send vLLM's `include_stop_str_in_output` (hosted APIs
        that refuse unknown fields: False). `client`, `sleep`: injected by tests."""
        import openai  # the `serve` extra; imported only when this engine is used

        if tokenizer is None:
            raise ValueError("the openai engine needs a tokenizer to turn token ids into text and back")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("openai engine: need concurrency >= 1, max_retries >= 0, timeout > 0")
        self.openai = openai
        # The client's own retries are off: ours below are the ones the docs and tests describe.
        self.client = client or openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.tokenizer, self.concurrency, self.max_retries = tokenizer, concurrency, max_retries
        self.backoff, self.prompt_ids, self.extensions, self.sleep = backoff, prompt_ids, extensions, sleep
        self.model_name = model_name or self._call(lambda: self.client.models.list().data[0].id)

    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> list[Completion]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            groups = list(pool.map(lambda item: self._one(item[0], item[1], params, n), enumerate(prompts)))
        return [c for group in groups for c in group]

    def _one(self, index: int, prompt: list[int], params: SamplingParams, n: int) -> list[Completion]:
        stops = [self.tokenizer.decode([t]) for t in params.stop_token_ids]
        extra = {"include_stop_str_in_output": True} if self.extensions and stops else {}
        if params.ignore_eos:
            extra["ignore_eos"] = True
        request = dict(model=self.model_name, n=n, max_tokens=params.max_new_tokens, temperature=params.temperature,
                       top_p=params.top_p, seed=params.seed + index, stop=stops or None,
                       prompt=prompt if self.prompt_ids else self.tokenizer.decode(prompt, skip_special_tokens=False),
                       extra_body=extra or None)
        response = self._call(lambda: self.client.completions.create(**request))
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != n:
            raise RuntimeError(f"{self.model_name}: asked for n={n} completions, the endpoint returned {len(choices)}")
        return [self._completion(index, choice, stops) for choice in choices]

    def _completion(self, index: int, choice, stops: list[str]) -> Completion:
        text = choice.text
        if choice.finish_reason == "stop" and stops and not self.extensions:
            text = _restore_stop(text, stops[0])
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        finish = "length" if choice.finish_reason == "length" else "stop"
        return Completion(prompt_index=index, ids=ids, logprobs=[math.nan] * len(ids), text=text,
                          finish_reason=finish, extra={"endpoint_finish_reason": choice.finish_reason})

    def _call(self, request):
        return call_with_retries(request, self.max_retries, self.backoff, self.sleep, "openai engine")


def call_with_retries(request, max_retries: int, backoff: float, sleep=time.sleep, who: str = "openai client"):
    """`request()`, retried on transient failures (connection errors, timeouts, 429, 5xx) after 1, 2,
    4, … × `backoff` seconds; a request the endpoint refuses (another 4xx) is a ValueError at once."""
    import openai as o

    transient = (o.APIConnectionError, o.APITimeoutError, o.RateLimitError, o.InternalServerError)
    for attempt in range(max_retries + 1):
        try:
            return request()
        except transient as err:
            if attempt == max_retries:
                raise RuntimeError(f"{who}: gave up after {attempt + 1} attempts: {err}") from err
            sleep(backoff * 2**attempt)
        except o.APIStatusError as err:  # a request the endpoint refuses: retrying will not help
            raise ValueError(f"{who}: the endpoint refused the request ({err.status_code}): {err.message}") from err
    raise AssertionError("unreachable")


def _restore_stop(text: str, stop: str) -> str:
    """Without `include_stop_str_in_output` the stop string is cut from the text; R1's `</answer>`
    is put back when the text ends inside an open `<answer>` (EOS ends the text otherwise)."""
    opener = stop.replace("</", "<", 1)
    if stop.startswith("</") and text.rfind(opener) > text.rfind(stop):
        return text + stop
    return text
