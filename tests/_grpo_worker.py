"""Run by test_multiproc.py / test_fsdp.py, as one process or under torchrun: a GRPO run through the
stage API, recording what each rank's update saw (its share of the advantages and completions) and
returned, and what each rank held of every parameter (sharded: its local shard; DeepSpeed ZeRO-3:
the module's placeholder) and of AdamW's state (DeepSpeed: its partition)."""

import json
import sys
from pathlib import Path

from aha.config import ZeroConfig, load_config
from aha.stages import grpo, grpo_step
from aha.train import dist

out, model_dir, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
d = dist.init()
records = []
real_update, real_setup = grpo_step.policy_update, grpo.setup
trainers = []


def recording_update(model, optimizer, batch, **kwargs):
    result = real_update(model, optimizer, batch, **kwargs)
    records.append({"advantages": batch.advantages.tolist(), "completions": batch.completion_ids,
                    "loss": result["loss"], "grad_norm": result["grad_norm"], "entropy": result["entropy"]})
    return result


def recording_setup(*args, **kwargs):
    trainers.append(real_setup(*args, **kwargs))
    return trainers[-1]


def held(model) -> dict:
    """{name: [elements this rank holds, elements of the whole parameter]}."""
    return {name: [(p.to_local() if hasattr(p, "to_local") else p).numel(), p.numel()]
            for name, p in model.named_parameters()}


grpo_step.policy_update, grpo.setup = recording_update, recording_setup
cfg = load_config(ZeroConfig, None, [f"model.path={model_dir}", f"run.out_dir={out}", "run.name=run", *overrides])
grpo.run(cfg, out / "run")
t = trainers[-1]
(out / f"rank{d.rank}.json").write_text(json.dumps(records))
torch_optimizer = getattr(t.optimizer, "base", t.optimizer)  # DeepSpeed: the AdamW over its partitions
(out / f"held{d.rank}.json").write_text(json.dumps({
    "policy": held(t.model), "reference": held(t.ref_model) if t.ref_model is not None else None,
    "optimizer": sum(v.to_local().numel() if hasattr(v, "to_local") else v.numel()
                     for s in torch_optimizer.state.values() for v in s.values() if v.dim() > 0),
    "deepspeed_stage": getattr(t.optimizer, "stage", None)}))
