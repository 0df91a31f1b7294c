"""The config of a resumed run: the saved `config.yaml` plus the new overrides. Settings that
change the algorithm are refused unless the user allows them; allowed changes are recorded."""

from __future__ import annotations

import json
import time
from pathlib import Path

from aha.config.base import ConfigError, load_config, save_config
from aha.config.sections import changed_settings


def resume_config(cls, run_dir: Path, overrides: list[str], allow_changes: bool = False):
    """Load `run_dir/config.yaml` with `overrides`. A changed setting outside `cls.FREE_ON_RESUME`
    is an error naming it, unless `allow_changes`: then config.yaml takes the new values and
    `config-changes.jsonl` records what changed, from what, and when."""
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    saved = load_config(cls, saved_file, [])
    new = load_config(cls, saved_file, overrides)
    changes = changed_settings(saved, new)
    locked = {k: v for k, v in changes.items() if k not in cls.FREE_ON_RESUME}
    if locked and not allow_changes:
        listed = "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in locked.items())
        raise ConfigError(f"{run_dir}: resuming with changed settings that alter the algorithm ({listed}); "
                          "pass --allow-changes to continue anyway (recorded in config-changes.jsonl)")
    if changes:
        save_config(new, saved_file)
        with (run_dir / "config-changes.jsonl").open("a") as log:
            log.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                  "changes": {k: [a, b] for k, (a, b) in changes.items()}}, default=str) + "\n")
    return new
