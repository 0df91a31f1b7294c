"""aha — the DeepSeek-R1 recipe end to end, and the place to watch the aha moment happen."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# OpenMP threads that wait at a barrier sleep instead of spinning. libgomp reads this once, when
# torch loads it, so it only takes effect when aha is imported before torch (the `aha` command,
# `import aha` first); a value the user set is kept. Why: a CPU rollout is thousands of short
# parallel regions; with the default (spin ~300k iterations) and one other busy process on 2 cores,
# a spinning thread holds the core its descheduled partner needs, and a 256-token rollout took
# 25-48 s instead of 1.7 s; passive waiting: 2-5 s (BENCHMARKS.md, "Hardening").
# `aha.kernels.threads` covers the case where torch was imported first.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
