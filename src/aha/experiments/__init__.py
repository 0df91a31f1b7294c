"""The experiments behind `aha paper`, one module per set of R1 findings, imported only when run.

Each module exposes `run_seed(out_dir, seed, quick=False, events=None) -> dict` (one seed's
figures, JSON-serialisable, with its cost ledger under "cost") and `summarize(per_seed) -> dict`
(the finding record of `aha.experiments.verdict.finding`; a module behind several findings returns
{finding id: record}). Listed in the order `aha paper` runs them.
"""

EXPERIMENTS = {  # name: (module, the findings it measures)
    "zero": ("aha.experiments.zero", ("F1", "F2", "F6")),
    "cold_start": ("aha.experiments.cold_start", ("F4",)),
    "mixing": ("aha.experiments.mixing", ("F3",)),
    "distill_vs_rl": ("aha.experiments.distill_vs_rl", ("F5",)),
}
