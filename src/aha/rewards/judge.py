"""An LLM judge of helpfulness behind any OpenAI-compatible chat endpoint (`reward_model.judge_url`).

The judge sees the request and the summary only (never the thought, R1 §2.3.4), answers with a score
from 1 to 10, and `parse_score` reads it robustly ("7", "Score: 7", "7/10", "7 out of 10", "**8**");
a reply with no readable score in 1–10 is None — that sample gets no reward_model component — and
is counted in `counts["unparseable"]`. Scores map linearly onto [0, 1]: (s − 1) / 9.

Requests go out `concurrency` at a time at temperature 0, retried like the openai rollout engine's
(connection errors, timeouts, 429 and 5xx with back-off; another 4xx fails at once).
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from aha.config.sections import DEFAULT_JUDGE_PROMPT

_NUMBER = r"(\d+(?:\.\d+)?)"
# Most explicit first: "7/10" or "7 out of 10", then "score: 7" / "rating 7", then a lone number.
_OUT_OF = re.compile(_NUMBER + r"\s*(?:/|out of)\s*10\b", re.IGNORECASE)
_LABELLED = re.compile(r"\b(?:score|rating|grade)\b\W{0,5}" + _NUMBER, re.IGNORECASE)
_ANY = re.compile(r"(?<![\d.])" + _NUMBER + r"(?!\.?\d)")


def parse_score(reply: str | None) -> float | None:
    """The judge's 1–10 score in a reply, or None when there is none, several different ones
    without a label, or one outside 1–10.

    >>> [parse_score(r) for r in ("7", "Score: 8/10", "**9**", "between 3 and 4", "eleven", "0")]
    [7.0, 8.0, 9.0, None, None, None]
    """
    if not reply:
        return None
    for pattern in (_OUT_OF, _LABELLED):
        match = pattern.search(reply)
        if match:
            return _in_range(float(match.group(1)))
    found = {float(x) for x in _ANY.findall(reply)}
    return _in_range(found.pop()) if len(found) == 1 else None


def _in_range(score: float) -> float | None:
    return score if 1.0 <= score <= 10.0 else None


class JudgeScorer:
    """`score(questions, summaries)`: the judge's scores mapped to [0, 1] (None where unreadable)."""

    def __init__(self, base_url: str, model_name: str = "", prompt: str = DEFAULT_JUDGE_PROMPT,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8, timeout: float = 60.0,
                 max_retries: int = 5, max_tokens: int = 16, backoff: float = 1.0, client=None, sleep=time.sleep):
        """`client`, `sleep`: injected by tests. The API key is read from the environment variable
        `api_key_env` (so no config file holds it); local endpoints take any key."""
        import openai  # the `serve` extra; imported only when a judge is configured

        from aha.rollout.openai_engine import call_with_retries

        if "{summary}" not in prompt:
            raise ValueError("judge prompt must contain the placeholder '{summary}'")
        self._call = lambda request: call_with_retries(request, max_retries, backoff, sleep, "reward_model judge")
        self.client = client or openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "none",
                                              timeout=timeout, max_retries=0)
        self.prompt, self.concurrency, self.max_tokens = prompt, concurrency, max_tokens
        self.model_name = model_name or self._call(lambda: self.client.models.list().data[0].id)
        self.counts = {"requests": 0, "unparseable": 0}

    def ask(self, question: str, summary: str) -> str | None:
        """The judge's raw reply for one summary."""
        content = self.prompt.replace("{question}", question).replace("{summary}", summary)
        response = self._call(lambda: self.client.chat.completions.create(
            model=self.model_name, messages=[{"role": "user", "content": content}], temperature=0.0,
            max_tokens=self.max_tokens))
        return response.choices[0].message.content if response.choices else None

    def score(self, questions: Sequence[str], summaries: Sequence[str]) -> list[float | None]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            replies = list(pool.map(self.ask, questions, summaries))
        scores = [parse_score(r) for r in replies]
        self.counts["requests"] += len(scores)
        self.counts["unparseable"] += sum(s is None for s in scores)
        return [None if s is None else (s - 1.0) / 9.0 for s in scores]
