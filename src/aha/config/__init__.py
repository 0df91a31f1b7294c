"""Configuration: shared sections, one frozen config per stage, YAML recipes and `key=value`
overrides, each config validated at load time (ranges, registered names, cross-field rules)."""

from aha.config.base import PRESETS, ConfigError, from_dict, load_config, save_config, to_dict
from aha.config.sections import (
    EvalConfig, GRPOConfig, ModelConfig, PretrainConfig, PromptConfig, RewardModelSection, RolloutConfig, RunConfig,
    TaskConfig, ZeroConfig, changed_settings,
)
from aha.config.rm import PairDataConfig, RMConfig, RMSection
from aha.config.stages import DataConfig, SampleConfig, SampleSection, SFTConfig, SFTSection

__all__ = [
    "PRESETS", "ConfigError", "DataConfig", "EvalConfig", "GRPOConfig", "ModelConfig", "PairDataConfig",
    "PretrainConfig", "PromptConfig", "RMConfig", "RMSection", "RewardModelSection", "RolloutConfig", "RunConfig",
    "SFTConfig", "SFTSection", "SampleConfig", "SampleSection", "TaskConfig", "ZeroConfig", "changed_settings", "from_dict", "load_config", "save_config", "to_dict",
]
