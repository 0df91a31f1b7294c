"""aha — the DeepSeek-R1 recipe end to end, and the place to watch the aha moment happen."""

__version__ = "0.1.0"

# OpenMP's wait policy is left to the user. Passive (sleeping) waits made a rollout beside a busy
# process 5-10x faster on 2 cores, but cost the idle-machine demo 30-45 % (40 steps: 25 vs 19 s;
# 200 steps: 168 vs 116 s of RL, one run each, BENCHMARKS.md "Hardening"); with spinning waits
# `aha.kernels.threads` cuts the rollout's threads when other processes keep cores busy instead.
# `OMP_WAIT_POLICY=PASSIVE aha …` chooses passive waits on a shared machine.
