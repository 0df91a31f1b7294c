"""The configs of the stages other than GRPO: `aha sft` and `aha sample`. They reuse the shared
sections (`aha.config.sections`) and add their own; each validates itself at load time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aha.config import checks
from aha.config.base import ConfigError
from aha.config.sections import ModelConfig, PretrainConfig, PromptConfig, RolloutConfig, RunConfig, TaskConfig


@dataclass(frozen=True)
class DataConfig:
    path: str = ""  # JSONL, parquet, or a `datasets` directory saved with save_to_disk
    # "messages": chat rows ({role, content} turns; ShareGPT's {from, value} too) — trained on the
    # assistant turns; "prompt_completion": a prompt and the completion to learn (open-r1 names:
    # problem/solution, question/answer, generation…); "auto" decides from the first row.
    format: Literal["auto", "messages", "prompt_completion"] = "auto"
    held_out: float = 0.05  # share of rows kept apart for the held-out loss (0 = none)
    max_length: int = 2048  # tokens per row (prompt + completion); longer rows are cut at the end
    limit: int = 0  # the first N rows only (0 = all)

    def validate(self, key: str) -> None:
        if not self.path:
            raise ConfigError(f"{key}.path: required — a JSONL, parquet or `datasets` directory of training rows")
        if not Path(self.path).exists():
            raise ConfigError(f"{key}.path: {self.path}: no such file or directory")
        checks.within(f"{key}.held_out", self.held_out, 0.0, 0.5)
        checks.at_least(f"{key}.max_length", self.max_length, 2)
        checks.at_least(f"{key}.limit", self.limit, 0)


@dataclass(frozen=True)
class SFTSection:
    epochs: int = 2
    lr: float = 1e-4
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.03  # share of the optimizer steps spent warming up
    weight_decay: float = 0.0
    batch_rows: int = 32  # rows per optimizer step: global, changes the algorithm
    # Padded tokens per forward/backward (speed/memory only). Rows are length-sorted into micro-batches,
    # so a smaller cap also pads attention less: bench/vs_trl_sft.py (16 rows of 112–496 tokens, 3 M
    # Qwen2, 1 thread) updated 30 % faster in fp32 and 12 % in bf16 at 2048 than at 8192 (1024: slower).
    micro_batch_tokens: int = 2048
    # Run the token prefix every row's prompt shares (a template) once per micro-batch: the same
    # loss and gradients up to float rounding, fewer tokens through the model (speed only).
    share_prefix: bool = True
    max_grad_norm: float = 1.0
    eval_every: int = 0  # optimizer steps between held-out losses (0 = at each epoch's end)

    def validate(self, key: str) -> None:
        for name in ("epochs", "batch_rows", "micro_batch_tokens"):
            checks.at_least(f"{key}.{name}", getattr(self, name), 1)
        checks.positive(f"{key}.lr", self.lr)
        checks.positive(f"{key}.max_grad_norm", self.max_grad_norm)
        checks.within(f"{key}.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        checks.at_least(f"{key}.weight_decay", self.weight_decay, 0.0)
        checks.at_least(f"{key}.eval_every", self.eval_every, 0)


@dataclass(frozen=True)
class SFTConfig:
    """`aha sft DATA`: supervised fine-tuning on completion tokens only, packed without padding."""

    FREE_ON_RESUME = ("run.save_every", "run.progress", "run.threads", "run.log_to", "run.max_bad_steps",
                      "sft.micro_batch_tokens", "sft.share_prefix", "sft.eval_every", "model.gradient_checkpointing")

    run: RunConfig = field(default_factory=lambda: RunConfig(name="sft", save_every=100))
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)  # which embedded base, when model.path=embedded
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTSection = field(default_factory=SFTSection)

    def validate(self) -> None:
        for name in ("run", "model", "pretrain", "task", "data", "sft"):
            getattr(self, name).validate(name)


@dataclass(frozen=True)
class SampleSection:
    split: Literal["train", "test"] = "train"
    problems: int = 200  # prompts drawn from the task's split
    k: int = 4  # samples per prompt
    # Registered filters (aha.algo.selection), applied in order; the report counts what each drops.
    filters: list = field(default_factory=lambda: ["correct", "readable", "dedupe"])
    max_per_prompt: int = 0  # keep at most this many records per prompt (0 = no cap)

    def validate(self, key: str) -> None:
        from aha.algo.selection import FILTERS

        checks.at_least(f"{key}.problems", self.problems, 1)
        checks.at_least(f"{key}.k", self.k, 1)
        checks.at_least(f"{key}.max_per_prompt", self.max_per_prompt, 0)
        for name in self.filters:
            checks.registered(f"{key}.filters", name, FILTERS)


@dataclass(frozen=True)
class SampleConfig:
    """`aha sample MODEL_OR_RUN`: k verified samples per prompt, filtered into SFT-ready rows."""

    FREE_ON_RESUME = ("run.progress", "run.threads", "rollout.max_batch")

    run: RunConfig = field(default_factory=lambda: RunConfig(name="sample"))
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    # The paper's sampling for evaluation and rejection sampling: T 0.6, top-p 0.95.
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(temperature=0.6, top_p=0.95))
    sample: SampleSection = field(default_factory=SampleSection)

    def validate(self) -> None:
        for name in ("run", "pretrain", "task", "prompt", "rollout", "sample"):
            getattr(self, name).validate(name)
        self.model.validate("model", chat_template=self.prompt.template == "chat")
