"""Metric loggers beside the run directory's own JSONL, chosen with `run.log_to=[tensorboard, wandb]`
(TRL's `report_to`). Each is an event listener: it writes every `metrics` event's numbers and closes
on `done`. Their libraries are optional; asking for one that is not installed is a clear error.
W&B honours its own environment (`WANDB_MODE=offline` works without a network)."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Callable

from aha.events import Event


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, numbers.Real) and not isinstance(v, bool) and k != "step"}


class TensorBoardLogger:
    def __init__(self, run_dir: Path, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("run.log_to=[tensorboard] needs the tensorboard package: pip install tensorboard") from err
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", f"```\n{config}\n```")

    def __call__(self, event: Event) -> None:
        if event.kind == "metrics":
            for key, value in _numbers(event.data["row"]).items():
                self.writer.add_scalar(f"{event.stage}/{key}", value, event.data["step"])
        elif event.kind == "done":
            self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, config: dict):
        try:
            import wandb
        except ImportError as err:
            raise ImportError("run.log_to=[wandb] needs the wandb package: pip install wandb") from err
        self.run = wandb.init(name=run_dir.name, dir=str(run_dir), config=config, resume="allow", id=run_dir.name)

    def __call__(self, event: Event) -> None:
        if event.kind == "metrics":
            self.run.log({f"{event.stage}/{k}": v for k, v in _numbers(event.data["row"]).items()},
                         step=event.data["step"])
        elif event.kind == "done":
            self.run.finish()


LOGGERS: dict[str, Callable] = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def make_loggers(names, run_dir: Path, config: dict) -> list:
    return [LOGGERS[name](run_dir, config) for name in names]
