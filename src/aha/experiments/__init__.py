"""Experiments: the paper's comparisons in miniature, each a module of seeded runs over stages
(`run_seed(out_dir, seed, quick, events) -> dict`, `summarize(per_seed) -> dict`).

    from aha.experiments import distill_vs_rl
    per_seed = [distill_vs_rl.run_seed(Path("runs/distill-vs-rl"), s) for s in (0, 1, 2)]
    print(distill_vs_rl.summarize(per_seed)["verdict"])

Submodules load on first use (they import torch and transformers).
"""
