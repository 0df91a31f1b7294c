"""Non-reasoning requests in English or Chinese: R1's "general" prompts in miniature.

R1's later stages mix reasoning data with requests that need no chain of thought ("hello"), answered
with an empty or one-line thought (§2.3.3), and its all-scenario RL scores such prompts with a reward
model of helpfulness on the summary (§2.3.4). Here the requests are a handful of kinds with
parameters — a greeting with a name, `say 37`, `a number bigger than 52`, `count to 4`,
`is 37 bigger than 52` — each in English or Chinese (`说 37`, `比 52 大的数`, …).

What a good answer is, is decided by a hidden rubric, `helpfulness(summary, problem)`: the right
content, in the prompt's language, direct (no padding). It is the oracle used to *measure* a policy
and to make preference pairs for the reward model (`preference_pairs`) — never the RL reward, which
comes from the reward model trained on those pairs (`aha rm`), as in the paper.

Train and test share no request: the split is decided by the request's kind and parameters, not
its language, so `say 37` and `说 37` fall on the same side.
"""

from __future__ import annotations

import random
import re
from typing import Mapping, Sequence

from aha.tasks.base import Problem, Task, in_test_split, register_task
from aha.template import build_prompt

LANGUAGES = ("en", "zh")
# Names paired by index: the English prompt greets with NAMES["en"][i], the Chinese one with NAMES["zh"][i].
NAMES: Mapping[str, tuple[str, ...]] = {
    "en": ("Ann", "Bob", "Tom", "Amy", "Sam", "Ben", "Eva", "Max", "Lily", "Jack",
           "Emma", "Leo", "Mia", "Noah", "Zoe", "Ian", "Kim", "Ray", "Sue", "Dan"),
    "zh": ("小明", "小红", "小华", "小丽", "小刚", "小芳", "小军", "小兰", "小东", "小雪",
           "小龙", "小梅", "小强", "小云", "小杰", "小玉", "小林", "小月", "小海", "小星"),
}
# The words of each language. A tail is the padding a rambling answer adds (no digit, no yes/no word).
PHRASES: Mapping[str, Mapping[str, str]] = {
    "en": {"greet": "hello, I am {name}", "hello": "hello", "say": "say {n}", "bigger": "a number bigger than {n}",
           "smaller": "a number smaller than {n}", "count": "count to {n}", "compare": "is {a} bigger than {b}",
           "yes": "yes", "no": "no", "filler": "sure", "thought": "easy",
           "tail": "I hope this helps, just tell me if you need anything more"},
    "zh": {"greet": "你好, 我是{name}", "hello": "你好", "say": "说 {n}", "bigger": "比 {n} 大的数",
           "smaller": "比 {n} 小的数", "count": "数到 {n}", "compare": "{a} 比 {b} 大吗",
           "yes": "是", "no": "不是", "filler": "好的", "thought": "简单",
           "tail": "希望这能帮到你, 有问题再问我"},
}
# Each request kind and its parameter space (tuples, keyed for the split by kind and values).
SPACES: Mapping[str, list[tuple[int, ...]]] = {
    "greet": [(i,) for i in range(len(NAMES["en"]))],
    "say": [(n,) for n in range(1000)],
    "bigger": [(n,) for n in range(1, 100)],
    "smaller": [(n,) for n in range(1, 100)],
    "count": [(n,) for n in range(2, 13)],
    "compare": [(a, b) for a in range(10, 100) for b in range(10, 100) if a != b],
}
REQUESTS = tuple(SPACES)
QUALITIES = ("perfect", "terse", "other_language", "wrong", "rambling")
# The flaws each kind can show; a quality a kind lacks is replaced by one it has (drawn).
FLAWS: Mapping[str, tuple[str, ...]] = {
    "greet": ("terse", "other_language", "wrong", "rambling"),
    "say": ("other_language", "wrong", "rambling"),
    "bigger": ("other_language", "wrong", "rambling"),
    "smaller": ("other_language", "wrong", "rambling"),
    "count": ("terse", "other_language", "wrong", "rambling"),
    "compare": ("other_language", "wrong", "rambling"),
}
DEFAULT_QUALITY_MIX = {"perfect": 0.5, "terse": 0.125, "other_language": 0.125, "wrong": 0.125, "rambling": 0.125}

# Words for the rubric: one CJK character is a word, otherwise runs of letters or of digits.
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|[A-Za-z]+|[0-9]+")
_NUMBER = re.compile(r"[0-9]{1,6}")


@register_task("general_bilingual")
class GeneralBilingualTask(Task):
    """`languages`: the two prompt languages; `second_share`: share of prompts in the second one;
    `requests`: the request kinds drawn (uniformly); `test_share`: share of each kind's requests
    held out for the test split."""

    reflection_markers = ()  # no chain of thought to reflect in

    def __init__(self, languages: Sequence[str] = LANGUAGES, second_share: float = 0.5,
                 requests: Sequence[str] = REQUESTS, test_share: float = 0.2):
        languages, requests = tuple(languages), tuple(requests)
        if len(languages) != 2 or set(languages) != set(LANGUAGES):
            raise ValueError(f"languages must be the two codes {list(LANGUAGES)} in some order, got {list(languages)}")
        if not requests or any(r not in SPACES for r in requests):
            raise ValueError(f"requests must name some of {list(REQUESTS)}, got {list(requests)}")
        for name, value in (("second_share", second_share), ("test_share", test_share)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.languages, self.second_share, self.requests, self.test_share = languages, second_share, requests, test_share
        self._pools = {split: {r: [ps for ps in SPACES[r] if in_test_split(f"{r}:{ps}", test_share) == (split == "test")]
                               for r in requests} for split in ("train", "test")}
        for split, pools in self._pools.items():
            empty = [r for r, pool in pools.items() if not pool]
            if empty:
                raise ValueError(f"test_share {test_share} leaves no {split} requests of kind {', '.join(empty)}")

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rng = random.Random(seed)
        # The language from its own stream, as in division_bilingual.
        languages = random.Random(f"language-{seed}")
        out = []
        for _ in range(n):
            request = rng.choice(self.requests)
            params = rng.choice(self._pools[split][request])
            out.append(make_problem(request, params, self.languages[int(languages.random() < self.second_share)]))
        return out

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        """The rubric's score of the summary (an oracle for measuring, not an RL reward)."""
        if answer is None or not answer.strip():
            return 0.0, {"reason": "no answer"}
        parts = rubric(answer, problem)
        score = parts["content"] * parts["language"] * parts["brevity"]
        return score, {"reason": "helpfulness", **parts}

    def corpus_document(self, problem: Problem, rng: random.Random) -> str:
        quality = rng.choices(list(DEFAULT_QUALITY_MIX), weights=list(DEFAULT_QUALITY_MIX.values()))[0]
        return completion(problem, candidate(problem, quality, rng)[1], rng)


def make_problem(request: str, params: tuple[int, ...], language: str) -> Problem:
    words = PHRASES[language]
    if request == "greet":
        question, answer = words["greet"].format(name=NAMES[language][params[0]]), reply(params[0], language)
    elif request == "compare":
        a, b = params
        question, answer = words["compare"].format(a=a, b=b), words["yes" if a > b else "no"]
    else:
        n = params[0]
        question = words[request].format(n=n)
        answer = {"say": str(n), "bigger": str(n + 1), "smaller": str(n - 1),
                  "count": " ".join(str(i) for i in range(1, n + 1))}[request]
    names = ("a", "b") if request == "compare" else ("name_index",) if request == "greet" else ("n",)
    meta = {"kind": "general", "language": language, "request": request, **dict(zip(names, params))}
    return Problem(question=question, answer=answer, id=f"gen-{request}-{'-'.join(map(str, params))}-{language}",
                   meta=meta)


def reply(index: int, language: str) -> str:
    return f"{PHRASES[language]['hello']} {NAMES[language][index]}"


def helpfulness(summary: str | None, problem: Problem) -> float:
    """The hidden rubric: content × language × brevity, each in [0, 1]; 1.0 only for the right
    content, in the prompt's language, said directly. No summary scores 0."""
    if summary is None or not summary.strip():
        return 0.0
    parts = rubric(summary, problem)
    return parts["content"] * parts["language"] * parts["brevity"]


def rubric(summary: str, problem: Problem) -> dict[str, float]:
    """The rubric's three factors:
    - content: 1 right, 0.5 partly right (a greeting without the name, a count stopped early, the
      asked number among others), 0 wrong;
    - language: 0.5 + 0.5 × the share of the summary's words in the prompt's language (1 when it
      has no words, e.g. a bare number);
    - brevity: 1 up to one word more than the reference answer, then 1 / (1 + 0.25 × extra words)."""
    from aha.rewards.language import language_share  # the reward's own word-level detector

    share = language_share(summary, problem.meta["language"])
    extra = max(0, len(_WORD.findall(summary)) - len(_WORD.findall(problem.answer)) - 1)
    return {"content": content_score(summary, problem), "language": 1.0 if share is None else 0.5 + 0.5 * share,
            "brevity": 1.0 / (1.0 + 0.25 * extra)}


def content_score(summary: str, problem: Problem) -> float:
    meta, text = problem.meta, summary.lower()
    numbers = [int(x) for x in _NUMBER.findall(summary)]
    request = meta["request"]
    if request == "greet":
        greeted = "你好" in summary or bool(re.search(r"\b(hello|hi)\b", text))
        named = any(NAMES[lang][meta["name_index"]].lower() in text for lang in LANGUAGES)
        return 0.5 * greeted + 0.5 * named
    if request == "compare":
        no = "不是" in summary or bool(re.search(r"\bno\b", text))
        yes = "是" in summary.replace("不是", "") or bool(re.search(r"\byes\b", text))
        if yes == no:  # neither, or both: no answer
            return 0.0
        return float(yes == (meta["a"] > meta["b"]))
    if not numbers:
        return 0.0
    n = meta["n"]
    if request == "say":
        return 1.0 if numbers == [n] else 0.5 if n in numbers else 0.0
    if request in ("bigger", "smaller"):
        ok = (lambda x: x > n) if request == "bigger" else (lambda x: x < n)
        return 1.0 if ok(numbers[0]) and len(numbers) == 1 else 0.5 if any(map(ok, numbers)) else 0.0
    # count: the whole sequence, or a shorter one from 1 (half credit)
    if numbers == list(range(1, n + 1)):
        return 1.0
    return 0.5 if numbers == list(range(1, len(numbers) + 1)) else 0.0


def candidate(problem: Problem, quality: str, rng: random.Random) -> tuple[str, str]:
    """(quality, summary): a summary of the asked quality, or — when this kind cannot show that
    flaw — of another flaw it can show (drawn). "perfect" always scores 1.0 on the rubric."""
    meta, language = problem.meta, problem.meta["language"]
    request, other = meta["request"], "zh" if language == "en" else "en"
    if quality != "perfect" and quality not in FLAWS[request]:
        quality = rng.choice(FLAWS[request])
    words = PHRASES[language]
    if quality == "perfect":
        if request in ("bigger", "smaller"):
            n = meta["n"]
            return quality, str(n + rng.randint(1, 3) if request == "bigger" else max(0, n - rng.randint(1, 3)))
        return quality, problem.answer
    if quality == "rambling":
        return quality, f"{problem.answer}, {words['tail']}"
    if quality == "other_language":
        if request == "greet":
            return quality, reply(meta["name_index"], other)
        if request == "compare":
            return quality, PHRASES[other]["yes" if meta["a"] > meta["b"] else "no"]
        return quality, f"{PHRASES[other]['filler']} {problem.answer}"
    if quality == "terse":
        if request == "greet":
            return quality, words["hello"]
        return quality, " ".join(str(i) for i in range(1, rng.randint(1, meta["n"] - 1) + 1))
    return quality, _wrong(problem, rng)


def _wrong(problem: Problem, rng: random.Random) -> str:
    meta, words = problem.meta, PHRASES[problem.meta["language"]]
    request = meta["request"]
    if request == "greet":
        index = (meta["name_index"] + rng.randint(1, len(NAMES["en"]) - 1)) % len(NAMES["en"])
        return reply(index, meta["language"])
    if request == "compare":
        return words["no" if meta["a"] > meta["b"] else "yes"]
    n = meta["n"]
    if request == "say":
        return str(n + rng.choice((-1, 1)) if n > 0 else n + 1)
    if request == "bigger":
        return str(max(0, n - rng.randint(0, 3)))
    if request == "smaller":
        return str(n + rng.randint(0, 3))
    skipped = rng.randint(1, n)  # count with one number left out
    return " ".join(str(i) for i in range(1, n + 1) if i != skipped)


def completion(problem: Problem, summary: str, rng: random.Random) -> str:
    """A completion in R1 shape with an empty or one-line thought (the paper's "hello" style)."""
    thought = PHRASES[problem.meta["language"]]["thought"] if rng.random() < 0.5 else ""
    return f" <think>{thought}</think> <answer>{summary}</answer>"


def _mix(quality_mix: Mapping[str, float] | None) -> dict[str, float]:
    mix = dict(DEFAULT_QUALITY_MIX if quality_mix is None else quality_mix)
    if not mix or any(q not in QUALITIES for q in mix) or any(not w >= 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"quality_mix must give non-negative weights (not all 0) to some of {list(QUALITIES)}, got {mix}")
    return mix


def non_reasoning_rows(n: int, seed: int, quality_mix: Mapping[str, float] | None = None, split: str = "train",
                       **task_options) -> list[dict]:
    """`n` SFT rows (prompt/completion, what `aha sft` reads) of requests that need no chain of
    thought, in a quality mix (default: half rubric-perfect, the rest terse, other-language, partly
    wrong or rambling), so that a model fine-tuned on them leaves RL room to improve. Each row
    records its `quality` and rubric `helpfulness`."""
    mix = _mix(quality_mix)
    task = GeneralBilingualTask(**task_options)
    rng = random.Random(f"rows-{seed}")
    rows = []
    for p in task.problems(split, n, seed):
        quality, summary = candidate(p, rng.choices(list(mix), weights=list(mix.values()))[0], rng)
        rows.append({"prompt": build_prompt(p.question), "completion": completion(p, summary, rng),
                     "quality": quality, "helpfulness": helpfulness(summary, p), "question": p.question,
                     "language": p.meta["language"], "request": p.meta["request"]})
    return rows


def candidate_summaries(problem: Problem, rng: random.Random) -> list[tuple[str, str]]:
    """One summary of each quality this request kind can show: (quality, summary)."""
    return [candidate(problem, q, rng) for q in ("perfect", *FLAWS[problem.meta["request"]])]


def preference_pairs(n: int, seed: int, split: str = "train", **task_options) -> list[dict]:
    """`n` rows {prompt, question, chosen, rejected, margin}: two completions of one prompt whose
    summaries differ in rubric score (chosen the higher; margin the difference). Thoughts are drawn
    independently of quality, so nothing but the summary tells the two apart. Prompts come from the
    train split (the test split gives held-out pairs)."""
    task = GeneralBilingualTask(**task_options)
    rng = random.Random(f"pairs-{seed}")
    rows: list[dict] = []
    round_ = 0
    while len(rows) < n:
        for p in task.problems(split, n, seed + 1_000_003 * round_):
            options = candidate_summaries(p, rng)
            for _ in range(8):  # two distinct scores (a flaw may score like another); rarely needs a redraw
                first, second = rng.sample(options, 2)
                a, b = helpfulness(first[1], p), helpfulness(second[1], p)
                if a != b:
                    break
            else:
                continue
            chosen, rejected = (first, second) if a > b else (second, first)
            rows.append({"prompt": build_prompt(p.question), "question": p.question,
                         "chosen": completion(p, chosen[1], rng), "rejected": completion(p, rejected[1], rng),
                         "margin": abs(a - b), "language": p.meta["language"], "request": p.meta["request"],
                         "qualities": [chosen[0], rejected[0]]})
            if len(rows) == n:
                break
        round_ += 1
    return rows
