"""The OpenAI request shapes the server accepts, and its OpenAI-shaped errors.

Only what the server honours is declared; fields it cannot honour (log-probs, tools, echo, `best_of`)
are refused with a 400 naming the field rather than silently ignored, and unknown extra fields are
ignored as OpenAI's own API does. Extensions as vLLM spells them: `ignore_eos` (the server's
default stops, EOS and `</answer>`, are off: decode to `max_tokens`, for benchmarks),
`stop_token_ids`, `include_stop_str_in_output`; and aha's own `separate_reasoning` (per request:
return the `<think>` part as `reasoning_content`, overriding the server's `--reasoning-parser`).
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

UNSUPPORTED = ("logprobs", "top_logprobs", "tools", "tool_choice", "functions", "echo", "best_of",
               "response_format", "suffix", "logit_bias")


class OpenAIError(Exception):
    """An error the client caused or should see, rendered as OpenAI's `{"error": {...}}` body."""

    def __init__(self, message: str, status: int = 400, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.type, self.param, self.code = status, type, param, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow", validate_default=True)

    model: str
    n: int = Field(1, ge=1, le=256)
    temperature: float | None = Field(None, ge=0, le=2)  # None = OpenAI's default, 1
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict | None = None
    user: str | None = None
    ignore_eos: bool = False
    stop_token_ids: list[int] = Field(default_factory=list)
    include_stop_str_in_output: bool = False
    separate_reasoning: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop: up to 4 non-empty strings")
        return stops

    def refuse_unsupported(self) -> None:
        for name in UNSUPPORTED:
            if (self.model_extra or {}).get(name) not in (None, False, 0, [], "none"):
                raise OpenAIError(f"'{name}' is not supported by this server", param=name, code="unsupported_parameter")

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[dict], None] = None

    def text(self) -> str:
        """The message's text; a list of parts must hold text parts only."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.get("type") != "text" for part in self.content):
            raise OpenAIError("only text content parts are supported", param="messages")
        return "".join(str(part.get("text", "")) for part in self.content)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    # One prompt (text or token ids) or a batch of text prompts.
    prompt: Union[str, list[str], list[int]]

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("prompt: an empty list")
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else 16  # OpenAI's completions default


def validation_error(errors: list[dict]) -> OpenAIError:
    """pydantic's first complaint as one OpenAI error naming the field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    if param is None:  # the body itself: not JSON, or not an object
        return OpenAIError(f"the request body must be a JSON object ({first.get('msg', 'invalid')})")
    return OpenAIError(f"{param}: {first.get('msg', 'invalid value')}", param=param)
