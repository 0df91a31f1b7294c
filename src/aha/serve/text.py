"""Tokens to text as they arrive: stop strings, streaming deltas, and the reasoning split.

Each sample's text is re-decoded in full as tokens arrive (quadratic in its length, negligible at
the few hundred tokens of R1 traces; what it buys is correct text across multi-token characters).
What is sent is held back while its end could still become a stop string, a `</think>` tag, or a
character whose bytes are not all decoded yet, so a stream never sends text it must take back.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _held(text: str, patterns) -> int:
    """Characters at the end of `text` that could be the start of one of `patterns`."""
    hold = 0
    for pattern in patterns:
        for size in range(min(len(pattern) - 1, len(text)), hold, -1):
            if pattern.startswith(text[-size:]):
                hold = size
                break
    return hold


class SampleText:
    """One sample's completion text: `feed` a token, get the text that may be sent now."""

    def __init__(self, tokenizer, stop: list[str], hidden_ids: set[int], include_stop: bool = False):
        self.tokenizer, self.stop, self.hidden_ids = tokenizer, stop, hidden_ids
        self.include_stop = include_stop  # keep the stop string in the text (vLLM's include_stop_str_in_output)
        self.ids: list[int] = []
        self.text = ""  # decoded so far, cut at a stop string
        self.sent = 0  # characters of `text` released
        self.tokens = 0  # completion tokens, hidden ones (EOS) included: what usage counts
        self.finish: str | None = None

    def feed(self, token: int, finish: str | None) -> str:
        if self.finish is not None:  # a stop string already ended it; later tokens were in flight
            return ""
        self.tokens += 1
        if token not in self.hidden_ids:  # EOS ends the text, it is not part of it
            self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        found = min(((text.find(s), s) for s in self.stop if s in text), default=None)
        if found is not None:
            text, finish = text[: found[0] + (len(found[1]) if self.include_stop else 0)], "stop"
        self.text, self.finish = text, finish
        end = len(text)
        if finish is None:
            end -= max(_held(text, self.stop), 1 if text.endswith("\ufffd") else 0)
        delta = text[self.sent : max(end, self.sent)]
        self.sent += len(delta)
        return delta


def split_reasoning(text: str) -> tuple[str | None, str | None]:
    """(reasoning, content) as vLLM's deepseek_r1 parser splits them: the text up to `</think>`
    (a leading `<think>` dropped) is reasoning, the rest content; no `</think>` = all reasoning."""
    body = text.lstrip()
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN):]
    if THINK_CLOSE not in body:
        return body, None
    reasoning, content = body.split(THINK_CLOSE, 1)
    return reasoning, content.lstrip() or None


class ReasoningStream:
    """The streaming side of `split_reasoning`: fed the whole text so far, returns the new
    (reasoning, content) deltas, holding back what could still turn into a tag."""

    def __init__(self):
        self.sent_reasoning = 0
        self.sent_content = 0

    def feed(self, text: str, final: bool) -> tuple[str, str]:
        if not final:
            text = text[: len(text) - self._hold(text)]
        reasoning, content = split_reasoning(text)
        r_delta, c_delta = (reasoning or "")[self.sent_reasoning:], (content or "")[self.sent_content:]
        self.sent_reasoning += len(r_delta)
        self.sent_content += len(c_delta)
        return r_delta, c_delta

    @staticmethod
    def _hold(text: str) -> int:
        stripped = text.lstrip()
        if THINK_OPEN.startswith(stripped):  # nothing yet, or a `<think>` still being written
            return len(text)
        return 0 if THINK_CLOSE in text else _held(text, [THINK_CLOSE])
