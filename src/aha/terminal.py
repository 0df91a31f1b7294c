"""The terminal side of stage events (used by the CLI only): rich progress bars per phase,
warnings and notes on the console. Stages never import this."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from aha.events import Event


class ConsoleView:
    """An event listener: one progress bar per phase, warnings in yellow, notes dimmed."""

    def __init__(self, console: Console, progress: bool = True):
        self.console = console
        self.enabled = progress
        self.bar: Progress | None = None
        self.job = None

    def __call__(self, event: Event) -> None:
        kind, data = event.kind, event.data
        if kind == "phase":
            self._close()
            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, disable=not self.enabled,
            )
            self.bar.start()
            self.job = self.bar.add_task(data["name"], total=data["total"], completed=data["completed"], info="")
        elif kind == "advance" and self.bar is not None:
            self.bar.update(self.job, completed=data["completed"], total=data["total"] or None, info=data["info"])
        elif kind == "warning":
            self.console.print(f"[yellow]warning:[/yellow] {data['message']}", soft_wrap=True)
        elif kind == "info":
            self.console.print(f"[dim]{data['message']}[/dim]", soft_wrap=True)
        elif kind == "done":
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def close(self) -> None:
        self._close()
