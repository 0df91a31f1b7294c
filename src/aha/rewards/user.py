"""Users' own rewards: `reward=my_module:my_fn` or `reward=path/to/file.py:my_fn`.

A user reward is a plain callable `fn(completions, **columns) -> list[float | None]` (None skips
the sample for that component). It receives the data columns it names — `question`, `answer`,
`id`, every meta field, and per-completion context such as `truncated` or `lengths` — but not
aha's internals (`problems`, `task`, `infos`) unless it takes `**kwargs`. Mistakes fail loudly:
a missing module or function, a signature that cannot take `completions` and keyword columns,
a wrong return value.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import numbers
import sys
from pathlib import Path
from typing import Any, Callable

INTERNALS = ("problems", "task", "infos")


class UserRewardError(ValueError):
    """A user reward could not be loaded, or broke its contract."""


def load_user_reward(spec: str) -> Callable[..., list]:
    """`module:function` or `file.py:function` → a reward callable in aha's registry form."""
    target, sep, fn_name = spec.rpartition(":")
    if not sep or not target or not fn_name:
        raise UserRewardError(f"user reward {spec!r}: expected 'module:function' or 'path/to/file.py:function'")
    module = _load_module(target, spec)
    fn = getattr(module, fn_name, None)
    if fn is None:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UserRewardError(f"user reward {spec!r}: {target} has no function {fn_name!r}; callables there: {', '.join(names) or 'none'}")
    if not callable(fn):
        raise UserRewardError(f"user reward {spec!r}: {fn_name!r} is a {type(fn).__name__}, not a function")
    return wrap_user_reward(fn, spec)


def _load_module(target: str, spec: str):
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise UserRewardError(f"user reward {spec!r}: file {path} not found")
        module_name = f"aha_user_reward_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # so dataclasses/pickling inside it can find the module
        loader_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise UserRewardError(f"user reward {spec!r}: module {target!r} not found ({exc}); is it on PYTHONPATH?") from None


def _signature_plan(fn: Callable, spec: str) -> tuple[bool, set[str], set[str]]:
    """(takes **kwargs, keyword names it accepts, keyword names it requires)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise UserRewardError(f"user reward {spec!r}: cannot read its signature ({exc})") from None
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    if not positional:
        raise UserRewardError(f"user reward {spec!r}: must take the completions list as its first argument, signature is {sig}")
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    extra_positional = [p.name for p in params[1:] if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    if extra_positional:
        raise UserRewardError(f"user reward {spec!r}: positional-only parameters {extra_positional} cannot receive columns; signature is {sig}")
    required = {p.name for p in named if p.default is p.empty}
    return var_kw, {p.name for p in named}, required


def columns_from(problems, context: dict[str, Any]) -> dict[str, list]:
    """Per-completion data columns: question, answer, id, meta fields, and context lists."""
    cols: dict[str, Any] = {k: v for k, v in context.items() if k not in INTERNALS}
    if problems is not None:
        cols["question"] = [p.question for p in problems]
        cols["answer"] = [p.answer for p in problems]
        cols["id"] = [p.id for p in problems]
        for key in sorted({k for p in problems for k in p.meta}):
            cols.setdefault(key, [p.meta.get(key) for p in problems])
    return cols


def wrap_user_reward(fn: Callable, spec: str) -> Callable[..., list]:
    var_kw, accepted, required = _signature_plan(fn, spec)

    def reward(completions, **context):
        cols = columns_from(context.get("problems"), context)
        if var_kw:
            kwargs = {**context, **cols}
        else:
            missing = required - cols.keys()
            if missing:
                raise UserRewardError(
                    f"user reward {spec!r} needs column(s) {sorted(missing)}; available: {', '.join(sorted(cols))}")
            kwargs = {k: v for k, v in cols.items() if k in accepted}
        values = fn(list(completions), **kwargs)
        return _checked(values, len(completions), spec)

    reward.__name__ = getattr(fn, "__name__", "user_reward")
    reward.__doc__ = fn.__doc__
    return reward


def _checked(values, n: int, spec: str) -> list[float | None]:
    if not isinstance(values, (list, tuple)):
        raise UserRewardError(f"user reward {spec!r} must return a list of {n} floats or None, got {type(values).__name__}")
    if len(values) != n:
        raise UserRewardError(f"user reward {spec!r} returned {len(values)} values for {n} completions")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
        elif isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)):
            out.append(float(v))
        else:
            raise UserRewardError(f"user reward {spec!r} returned {v!r} ({type(v).__name__}) at index {i}; expected a finite float or None")
    return out
