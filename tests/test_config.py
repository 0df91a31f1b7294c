"""Config: recipe + dotted overrides, presets, and clear errors."""

import pytest

from aha.config import ConfigError, ZeroConfig, load_config, save_config


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(ZeroConfig, None, ["grpo.beta=0.001", "rollout.temperature=0.8", "task.options={hard_share: 0.5}"])
    assert cfg.grpo.beta == 0.001 and cfg.rollout.temperature == 0.8
    assert cfg.task.options == {"hard_share": 0.5}
    assert load_config(ZeroConfig, None, ["grpo.lr=1"]).grpo.lr == 1.0  # an int where a float is expected
    assert load_config(ZeroConfig, None, ["grpo.lr=1e-3"]).grpo.lr == 0.001  # YAML 1.1 reads this as a string


def test_model_shorthand():
    assert load_config(ZeroConfig, None, ["model=path/to/dir"], validate=False).model.path == "path/to/dir"


def test_recipe_then_overrides_win(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grpo:\n  steps: 7\n  beta: 0.5\n")
    cfg = load_config(ZeroConfig, recipe, ["grpo.beta=0.0"])
    assert cfg.grpo.steps == 7 and cfg.grpo.beta == 0.0


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(ZeroConfig, None, ["grpo.steps=3"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(ZeroConfig, tmp_path / "config.yaml") == cfg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key grpo\.bta; valid keys in grpo: .*beta"):
        load_config(ZeroConfig, None, ["grpo.bta=0.1"])
    with pytest.raises(ConfigError, match="unknown key optimizer; valid keys in the top level: run, model"):
        load_config(ZeroConfig, None, ["optimizer.lr=0.1"])


@pytest.mark.parametrize("override,message", [
    ("grpo.steps=many", "grpo.steps: expected int, got str 'many'"),
    ("grpo.steps=2.5", "grpo.steps: expected int, got float 2.5"),
    ("run.progress=3", "run.progress: expected bool, got int 3"),
    ("grpo.steps=true", "grpo.steps: expected int, got bool True"),
    ("grpo.lr=fast", "grpo.lr: expected float, got str 'fast'"),
    ("rewards=5", "rewards: expected a mapping"),
    ("grpo=3", "grpo: expected a mapping"),
    ("nonsense", "expected key=value"),
])
def test_bad_values_name_key_and_type(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(ZeroConfig, None, [override])


def test_presets_apply_under_explicit_values():
    cfg = load_config(ZeroConfig, None, ["grpo.preset=r1", "grpo.group_size=4"])
    assert cfg.grpo.beta == 0.001 and cfg.grpo.ref_reset_every == 400 and cfg.grpo.group_size == 4
    with pytest.raises(ConfigError, match="unknown preset 'r2'; valid presets: r1"):
        load_config(ZeroConfig, None, ["grpo.preset=r2"])


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(ZeroConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(ZeroConfig, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(ZeroConfig, listy)
