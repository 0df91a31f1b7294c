"""`aha r1`'s config: the shared sections every stage reads (run, model, pretrain, task, prompt,
rollout, eval) and one section per stage of R1's pipeline (§2.3): cold start → reasoning RL with
the language-consistency reward → rejection sampling + non-reasoning data → SFT from the base →
all-scenario RL. Each stage's own config (`SFTConfig`, `ZeroConfig`, `SampleConfig`, `RMConfig`)
is built from these by `aha.pipelines.r1` and validated here, at load time, before any model loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from aha.config import checks
from aha.config.base import ConfigError
from aha.config.rm import RMSection
from aha.config.sections import (
    BILINGUAL_PRETRAIN, EvalConfig, GRPOConfig, ModelConfig, PretrainConfig, PromptConfig, RewardModelSection,
    RolloutConfig, RunConfig, TaskConfig,
)
from aha.config.stages import SampleSection, SFTSection

# The RL settings of the miniature's R1-Zero (`zero-bilingual`), shortened: R1's RL stages start
# from SFT checkpoints that already reason, so they need fewer steps than RL from the base.
_RL = dict(steps=100, prompts_per_step=16, group_size=8, lr=1e-4, beta=0.0)


@dataclass(frozen=True)
class ColdStartSection:
    # The user's readable long-CoT traces (JSONL/parquet/datasets dir, as `aha sft` reads), or ""
    # to generate `traces` of them from the task's own checker (the embedded tasks).
    data: str = ""
    traces: int = 400
    seed: int = 7  # problems of the train split drawn with a seed of their own
    sft: SFTSection = field(default_factory=lambda: SFTSection(lr=5e-4, epochs=2))

    def validate(self, key: str) -> None:
        if self.data and not Path(self.data).exists():
            raise ConfigError(f"{key}.data: {self.data}: no such file or directory")
        checks.at_least(f"{key}.traces", self.traces, 1)
        self.sft.validate(f"{key}.sft")


@dataclass(frozen=True)
class RLSection:
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(**_RL))
    # R1's reasoning RL: accuracy + format + the language-consistency reward (§2.3.2: "directly
    # summed" with accuracy).
    rewards: dict = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.2, "language_consistency": 1.0})

    def validate(self, key: str) -> None:
        if self.grpo.preset:
            raise ConfigError(f"{key}.grpo.preset: presets apply to `aha zero` recipes; give the settings "
                              f"in {key}.grpo explicitly")
        self.grpo.validate(f"{key}.grpo")
        checks.rewards(f"{key}.rewards", self.rewards)


@dataclass(frozen=True)
class RejectionSection:
    # Sampling from the reasoning-RL checkpoint (T 0.6, top-p 0.95, as evaluation), kept when
    # correct and readable, deduped, at most `max_per_prompt` per prompt.
    sample: SampleSection = field(default_factory=lambda: SampleSection(
        problems=600, k=4, filters=["correct", "readable", "dedupe"], max_per_prompt=2))
    # Non-reasoning rows (R1: "for simple queries such as 'hello' we do not provide a CoT") from
    # this task, as a share of the final SFT mix.
    general_task: str = "general_bilingual"
    non_reasoning_share: float = 0.25
    sft: SFTSection = field(default_factory=lambda: SFTSection(lr=5e-4, epochs=3))

    def validate(self, key: str) -> None:
        from aha.tasks import TASKS

        self.sample.validate(f"{key}.sample")
        checks.within(f"{key}.non_reasoning_share", self.non_reasoning_share, 0.0, 0.9)
        if self.non_reasoning_share > 0:
            checks.registered(f"{key}.general_task", self.general_task, TASKS)
        self.sft.validate(f"{key}.sft")


@dataclass(frozen=True)
class AllScenarioSection:
    # R1 §2.3.4: rule rewards on reasoning prompts (the whole response), a reward model's score of
    # the summary on general prompts; `general_share` of each step's prompts are general ones.
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(**{**_RL, "steps": 50}))
    rewards: dict = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.2, "language_consistency": 1.0,
                                                   "reward_model": 1.0})
    general_share: float = 0.25
    # A reward model directory or an LLM judge's endpoint; both empty: `aha rm` trains one into rm/
    # (on the base's body, with the `rm` settings below).
    reward_model: RewardModelSection = field(default_factory=RewardModelSection)
    rm: RMSection = field(default_factory=RMSection)
    general_problems: int = 100  # held-out general prompts each stage's model answers in the comparison

    def validate(self, key: str) -> None:
        RLSection(self.grpo, self.rewards).validate(key)
        checks.within(f"{key}.general_share", self.general_share, 0.0, 0.9, low_open=True)
        self.reward_model.validate(f"{key}.reward_model")
        self.rm.validate(f"{key}.rm")
        checks.at_least(f"{key}.general_problems", self.general_problems, 1)

    @property
    def trains_reward_model(self) -> bool:
        return not (self.reward_model.path or self.reward_model.judge_url)


@dataclass(frozen=True)
class R1Config:
    """`aha r1`: R1's four stages over run directories under one pipeline directory."""

    FREE_ON_RESUME = ("run.progress", "run.threads", "run.save_every", "rollout.max_batch")

    run: RunConfig = field(default_factory=lambda: RunConfig(name="r1", save_every=25))
    model: ModelConfig = field(default_factory=ModelConfig)  # the base ("embedded" = the tiny one)
    pretrain: PretrainConfig = BILINGUAL_PRETRAIN
    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="division_bilingual"))
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(temperature=1.0, max_new_tokens=64))
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(every=0))
    # R1-Zero from the same base with the same RL settings (accuracy and format rewards only), for
    # the report's overlay; off to save its time.
    zero_baseline: bool = True
    cold_start: ColdStartSection = field(default_factory=ColdStartSection)
    reasoning_rl: RLSection = field(default_factory=RLSection)
    rejection: RejectionSection = field(default_factory=RejectionSection)
    all_scenario: AllScenarioSection = field(default_factory=AllScenarioSection)

    def validate(self) -> None:
        for name in ("run", "pretrain", "task", "prompt", "rollout", "eval", "cold_start", "reasoning_rl",
                     "rejection", "all_scenario"):
            getattr(self, name).validate(name)
        self.model.validate("model", chat_template=self.prompt.template == "chat")
        if self.rollout.engine == "openai":
            raise ConfigError("rollout.engine: 'openai' returns no log-probs, which GRPO's update needs; use 'torch'")
        if not self.cold_start.data:
            _check_synthetic_traces("cold_start.data", self.task)

    def with_run(self, **changes) -> "R1Config":
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **changes))


def _check_synthetic_traces(key: str, task: TaskConfig) -> None:
    """Without a JSONL the task must generate cold-start traces itself (the embedded tasks do)."""
    from aha.tasks import TASKS
    from aha.tasks.base import Task

    cls = TASKS[task.name]
    if cls.cold_start_completion is Task.cold_start_completion:
        raise ConfigError(f"{key}: task {task.name!r} has no synthetic cold-start traces; give a JSONL of "
                          "readable long-CoT traces (prompt/completion or messages rows)")
