"""`aha distill`'s config: a teacher (run, model directory or endpoint), a student, the traces'
sampling and filters, decontamination, and the SFT settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aha.config import checks
from aha.config.base import ConfigError
from aha.config.sections import ModelConfig, PretrainConfig, PromptConfig, RolloutConfig, RunConfig, TaskConfig
from aha.config.stages import SampleSection, SFTSection


@dataclass(frozen=True)
class TeacherSection:
    SHORTHAND = "path"
    # A model directory, a run directory (its final model or latest checkpoint), or an
    # OpenAI-compatible base URL (then the student's tokenizer maps ids to text).
    path: str = ""
    model_name: str = ""  # with a URL: the model to ask for (default: the endpoint's first)

    def validate(self, key: str) -> None:
        if not self.path:
            raise ConfigError(f"{key}.path: required — a run, a model directory or an http(s):// endpoint")
        if not self.is_url and self.path != "embedded" and not Path(self.path).is_dir():
            raise ConfigError(f"{key}.path: {self.path}: no such directory (a run, a model directory or a URL)")

    @property
    def is_url(self) -> bool:
        return self.path.startswith(("http://", "https://"))


@dataclass(frozen=True)
class DecontaminateSection:
    # Held-out (test split) questions checked against, drawn with `seed`: the task's lists are
    # prefix-stable (division, arithmetic, countdown checked), so this covers `aha eval --problems`
    # up to this many at the same seed.
    problems: int = 1000
    seed: int = 0  # the seed `aha eval` draws its problems with (its default is 0)
    ngram: int = 8

    def validate(self, key: str) -> None:
        checks.at_least(f"{key}.problems", self.problems, 0)
        checks.at_least(f"{key}.seed", self.seed, 0)
        checks.at_least(f"{key}.ngram", self.ngram, 1)


@dataclass(frozen=True)
class DistillConfig:
    """`aha distill --teacher T --student S`: teacher traces → verified, filtered, deduped,
    decontaminated → SFT of the student."""

    FREE_ON_RESUME = ("run.progress", "run.threads", "rollout.max_batch", "sft.micro_batch_tokens", "sft.share_prefix")

    run: RunConfig = field(default_factory=lambda: RunConfig(name="distill", save_every=100))
    model: ModelConfig = field(default_factory=ModelConfig)  # the student ("embedded" = the tiny base)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(temperature=0.6, top_p=0.95))
    sample: SampleSection = field(default_factory=SampleSection)
    decontaminate: DecontaminateSection = field(default_factory=DecontaminateSection)
    sft: SFTSection = field(default_factory=SFTSection)
    held_out: float = 0.05  # share of the distilled rows kept apart for SFT's held-out loss

    def validate(self) -> None:
        for name in ("run", "pretrain", "task", "prompt", "teacher", "rollout", "sample", "decontaminate", "sft"):
            getattr(self, name).validate(name)
        self.model.validate("model", chat_template=self.prompt.template == "chat")
        checks.within("held_out", self.held_out, 0.0, 0.5)
        if self.sample.split != "train":
            raise ConfigError("sample.split: distillation samples the train split (the test split is held out)")
