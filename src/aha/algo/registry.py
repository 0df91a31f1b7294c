"""Name → function registries; an unknown name is an error that lists the valid ones."""

from __future__ import annotations

from typing import Callable


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable:
        def wrap(fn):
            self[name] = fn
            return fn

        return wrap

    def get_or_raise(self, name: str) -> Callable:
        if name not in self:
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self))}")
        return self[name]
