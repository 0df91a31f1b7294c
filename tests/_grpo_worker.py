"""Run by test_multiproc.py, as one process or under torchrun: a GRPO run through the stage API,
recording what each rank's update saw (its share of the advantages and completions) and returned."""

import json
import sys
from pathlib import Path

from aha.config import ZeroConfig, load_config
from aha.stages import grpo, grpo_step
from aha.train import dist

out, model_dir, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
d = dist.init()
records = []
real_update = grpo_step.policy_update


def recording_update(model, optimizer, batch, **kwargs):
    result = real_update(model, optimizer, batch, **kwargs)
    records.append({"advantages": batch.advantages.tolist(), "completions": batch.completion_ids,
                    "loss": result["loss"], "grad_norm": result["grad_norm"], "entropy": result["entropy"]})
    return result


grpo_step.policy_update = recording_update
cfg = load_config(ZeroConfig, None, [f"model.path={model_dir}", f"run.out_dir={out}", "run.name=run", *overrides])
grpo.run(cfg, out / "run")
(out / f"rank{d.rank}.json").write_text(json.dumps(records))
