"""The R1-Zero prompt template and the parser of its `<think>…</think> <answer>…</answer>` shape.

The template text is Table 1 of DeepSeek-R1 (arXiv 2501.12948) verbatim. Tasks never parse it: the
reward layer extracts the answer span here and hands tasks the answer text only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. User: {prompt}. Assistant:"
)

# R1's evaluation prompt for math (paper §3 / DeepSeek's recommended usage).
R1_MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."

TAGS = ("<think>", "</think>", "<answer>", "</answer>")

# One well-formed response: optional leading space, one think block, optional space, one answer
# block, nothing after but whitespace. Non-greedy bodies + the tag checks below reject nesting.
_SHAPE = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)


# Prompt templates by name (`prompt.template=`); any other text holding `{prompt}` is used as given,
# and "chat" renders the question as one user turn through the tokenizer's own chat template.
TEMPLATES = {"r1-zero": R1_ZERO_TEMPLATE, "plain": "{prompt}"}
CHAT = "chat"


def check_template(template: str) -> None:
    """Raise ValueError unless `template` is a registered name, "chat", or a text with `{prompt}`."""
    if template != CHAT and template not in TEMPLATES and "{prompt}" not in template:
        raise ValueError(f"unknown template {template!r}; valid: {', '.join([*TEMPLATES, CHAT])} "
                         "or a text containing '{prompt}'")


def render_prompt(question: str, template: str = "r1-zero", tokenizer=None) -> str:
    """The text the policy continues for `question` under a configured template."""
    if template == CHAT:
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return build_prompt(question, TEMPLATES.get(template, template))


def build_prompt(question: str, template: str = R1_ZERO_TEMPLATE) -> str:
    """The text the policy continues. `template` must hold one `{prompt}` slot."""
    if "{prompt}" not in template:
        raise ValueError("template must contain the placeholder '{prompt}'")
    return template.replace("{prompt}", question)


@dataclass(frozen=True)
class ParsedResponse:
    think: str | None  # the chain of thought, None when the shape is broken
    answer: str | None  # text of the (last) <answer> block, None when there is none
    well_formed: bool  # exactly one <think>…</think> followed by exactly one <answer>…</answer>
    reason: str  # why it is not well formed ("" when it is)


def parse_response(completion: str, truncated: bool = False) -> ParsedResponse:
    """Split a completion into thought and answer and judge its format.

    >>> parse_response("<think>2+2=4</think> <answer>4</answer>").well_formed
    True
    >>> parse_response("<think>a</think><answer>1</answer><answer>2</answer>").reason
    'each tag must appear exactly once'
    """
    answer = _last_answer(completion)
    if truncated:
        return ParsedResponse(None, answer, False, "truncated at the token limit")
    counts = [completion.count(tag) for tag in TAGS]
    if any(c != 1 for c in counts):
        return ParsedResponse(None, answer, False, "each tag must appear exactly once")
    match = _SHAPE.match(completion)
    if match is None:
        return ParsedResponse(None, answer, False, "expected <think>…</think> then <answer>…</answer>, nothing else")
    if not match["answer"].strip():
        return ParsedResponse(match["think"], None, False, "empty answer")
    return ParsedResponse(match["think"], match["answer"].strip(), True, "")


def _last_answer(completion: str) -> str | None:
    """The content of the last closed <answer> block, even when the format is broken elsewhere:
    accuracy and format are separate rewards, so a wrong shape does not hide a right answer."""
    end = completion.rfind("</answer>")
    if end < 0:
        return None
    start = completion.rfind("<answer>", 0, end)
    if start < 0:
        return None
    text = completion[start + len("<answer>") : end].strip()
    return text or None


def summary_text(completion: str, untagged: str = "none") -> str | None:
    """The summary a helpfulness score reads (R1 §2.3.4: helpfulness on the summary only, never the
    thought): the last <answer> block; without one, the text after the last </think> (R1's own
    format, `<think>…</think> summary`, unless an <answer> there was never closed); without either,
    None — or, with `untagged="whole"`, the whole text (a bare response in a preference file).
    Empty text is no summary.

    >>> summary_text("<think>hmm</think> <answer>hello Ann</answer>"), summary_text("<think>x</think> 37")
    ('hello Ann', '37')
    """
    answer = _last_answer(completion)
    if answer is not None:
        return answer
    if "</think>" in completion:
        text = completion.rsplit("</think>", 1)[1].strip()
        if any(tag in text for tag in TAGS):  # an <answer> opened and never closed: cut short
            return None
    elif untagged == "whole" and not any(tag in completion for tag in TAGS):
        text = completion.strip()
    else:
        return None
    return text or None


def think_text(completion: str) -> str:
    """The chain of thought for behaviour metrics: text before </think> (or before <answer>, or all)."""
    body = completion.split("<think>", 1)[-1]
    for closer in ("</think>", "<answer>"):
        if closer in body:
            return body.split(closer, 1)[0]
    return body
