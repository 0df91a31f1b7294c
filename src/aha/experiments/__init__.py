"""Experiments: the paper's comparisons in miniature, each a module of seeded runs over stages
(`run_seed(out_dir, seed, quick, events) -> dict`, `summarize(per_seed) -> dict`).

    from aha.experiments import distill_vs_rl
    per_seed = [distill_vs_rl.run_seed(Path("runs/distill-vs-rl"), s) for s in (0, 1, 2)]
    print(distill_vs_rl.summarize(per_seed)["verdict"])

`aha paper` runs the modules of `EXPERIMENTS` in that order, seed by seed; each returns one seed's
figures (JSON-serialisable, its cost ledger under "cost") and summarizes them into finding records
(`aha.experiments.verdict.finding`; a module behind several findings returns {finding id: record}).
`paper_distill` puts `distill_vs_rl` (Table 6) in that shape. Submodules load on first use (they
import torch and transformers).
"""

EXPERIMENTS = {  # name: (module, the findings it measures)
    "zero": ("aha.experiments.zero", ("F1", "F2", "F6")),
    "cold_start": ("aha.experiments.cold_start", ("F4",)),
    "mixing": ("aha.experiments.mixing", ("F3",)),
    "distill_vs_rl": ("aha.experiments.paper_distill", ("F5",)),
}
