"""`aha rm`'s config: a causal-LM body (the embedded bilingual base by default), preference pairs (a
JSONL file, or synthetic pairs of the general_bilingual task), and the Bradley–Terry training."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aha.config import checks
from aha.config.base import ConfigError
from aha.config.sections import BILINGUAL_PRETRAIN, ModelConfig, PretrainConfig, PromptConfig, RunConfig, TaskConfig


@dataclass(frozen=True)
class PairDataConfig:
    # JSONL of {prompt, chosen, rejected} rows (chosen/rejected: completions with a summary, or bare
    # responses); empty = `rm.pairs` synthetic pairs of general_bilingual (train split) and
    # `rm.held_out_pairs` from its test split.
    path: str = ""
    held_out: float = 0.1  # share of a file's rows kept apart for the held-out pairwise accuracy
    max_length: int = 0  # tokens per scored text, prompt + summary (0 = the model's context)
    limit: int = 0  # the first N rows of the file only (0 = all)

    def validate(self, key: str) -> None:
        if self.path and not Path(self.path).is_file():
            raise ConfigError(f"{key}.path: {self.path}: no such file (a JSONL of prompt/chosen/rejected rows, "
                              "or leave it empty for synthetic pairs)")
        checks.within(f"{key}.held_out", self.held_out, 0.0, 0.5)
        checks.at_least(f"{key}.max_length", self.max_length, 0, "0 = the model's context")
        checks.at_least(f"{key}.limit", self.limit, 0)


@dataclass(frozen=True)
class RMSection:
    pairs: int = 2000  # synthetic training pairs (when data.path is empty)
    held_out_pairs: int = 200  # synthetic held-out pairs, from the test split
    pairs_options: dict = field(default_factory=dict)  # general_bilingual's options for the synthetic pairs
    agreement_problems: int = 100  # held-out prompts whose candidate summaries are ranked against the rubric
    epochs: int = 2
    lr: float = 1e-3
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    batch_pairs: int = 32  # pairs per optimizer step: global, changes the algorithm
    micro_batch_pairs: int = 32  # pairs per forward/backward (speed/memory only)
    max_grad_norm: float = 1.0

    def validate(self, key: str) -> None:
        for name in ("pairs", "held_out_pairs", "epochs", "batch_pairs", "micro_batch_pairs"):
            checks.at_least(f"{key}.{name}", getattr(self, name), 1)
        checks.at_least(f"{key}.agreement_problems", self.agreement_problems, 0)
        checks.positive(f"{key}.lr", self.lr)
        checks.positive(f"{key}.max_grad_norm", self.max_grad_norm)
        checks.within(f"{key}.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        checks.at_least(f"{key}.weight_decay", self.weight_decay, 0.0)
        from aha.tasks import TASKS

        try:
            inspect.signature(TASKS["general_bilingual"]).bind(**self.pairs_options)
        except TypeError as err:
            takes = ", ".join(inspect.signature(TASKS["general_bilingual"]).parameters)
            raise ConfigError(f"{key}.pairs_options: {err} (general_bilingual takes: {takes})") from None


@dataclass(frozen=True)
class RMConfig:
    """`aha rm`: a reward model (one-label sequence classifier) trained on preference pairs."""

    FREE_ON_RESUME = ("run.save_every", "run.progress", "run.threads", "run.log_to", "run.max_bad_steps",
                      "rm.micro_batch_pairs")

    run: RunConfig = field(default_factory=lambda: RunConfig(name="rm", save_every=100))
    # The body: "embedded" (the base of `task`, below) or any HF causal-LM directory.
    model: ModelConfig = field(default_factory=ModelConfig)
    # The bilingual miniature's base (the one shipped with aha): it has read general requests.
    pretrain: PretrainConfig = BILINGUAL_PRETRAIN
    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="division_bilingual"))
    # How synthetic pairs' prompts are rendered: as the GRPO run that uses the model renders them.
    prompt: PromptConfig = field(default_factory=PromptConfig)
    data: PairDataConfig = field(default_factory=PairDataConfig)
    rm: RMSection = field(default_factory=RMSection)

    def validate(self) -> None:
        for name in ("run", "pretrain", "task", "prompt", "data", "rm"):
            getattr(self, name).validate(name)
        self.model.validate("model", chat_template=self.prompt.template == "chat")
        if self.model.lora.r:
            raise ConfigError("model.lora.r: aha rm trains every weight (LoRA reward models are not supported); use 0")
        if self.model.precision != "fp32":
            raise ConfigError("model.precision: aha rm trains in fp32 only; use fp32")
