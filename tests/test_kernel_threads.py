"""The decode's thread budget (free cores from /proc/stat) and the kernel's build name."""

from __future__ import annotations

import os

import pytest
import torch

from aha import kernels
from aha.kernels import threads

PROC_STAT = """cpu  400 0 100 1000 50 0 10 5 0 0
cpu0 100 0 50 500 25 0 5 2 0 0
cpu1 300 0 50 500 25 0 5 3 7 0
intr 12345
"""


def test_busy_seconds_counts_user_system_irq_steal_not_idle_or_iowait():
    hz = os.sysconf("SC_CLK_TCK")
    # cpu0: 100 + 0 + 50 + 0 (irq) + 5 + 2 = 157 ticks; cpu1: 300 + 50 + 5 + 3 = 358 (guest 7 is in user)
    assert threads.busy_seconds(PROC_STAT, [0]) == pytest.approx(157 / hz)
    assert threads.busy_seconds(PROC_STAT, [0, 1]) == pytest.approx((157 + 358) / hz)
    assert threads.busy_seconds(PROC_STAT, [0, 2]) is None  # a CPU without a line: no reading


@pytest.mark.parametrize("cap, cpus, others, expected", [
    (2, 2, 0.0, 2), (2, 2, 0.2, 2), (2, 2, 0.3, 1), (2, 2, 1.0, 1), (2, 2, 2.0, 1),  # 1 at least
    (4, 8, 0.0, 4), (8, 8, 3.0, 5), (8, 8, 3.2, 5), (8, 8, 3.3, 4), (1, 8, 0.0, 1), (4, 4, -0.5, 4),
])
def test_threads_for_one_per_nearly_free_cpu(cap, cpus, others, expected):
    assert threads.threads_for(cap, cpus, others) == expected


def test_spinning_waits_from_the_environment():
    assert threads.spinning_waits({}) and threads.spinning_waits({"OMP_WAIT_POLICY": "active"})
    assert not threads.spinning_waits({"OMP_WAIT_POLICY": "passive"})
    assert not threads.spinning_waits({"GOMP_SPINCOUNT": "0"})


def test_budget_follows_measured_load_and_restores_the_thread_count(monkeypatch):
    budget = threads.ThreadBudget()
    budget.spinning = True
    budget.cpus, budget.limit = [0, 1], 2  # two usable CPUs whatever this process's affinity is
    clock = {"wall": 100.0, "own": 10.0, "busy": 50.0}
    monkeypatch.setattr(budget, "_reading", lambda: (clock["wall"], clock["own"], clock["busy"]))
    budget.clock = lambda: clock["wall"]
    budget._last = budget._reading()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # 1 s in which we used 1.0 CPU-s and the two CPUs were busy 1.9 s: others kept 0.9 cores busy.
        clock.update(wall=101.0, own=11.0, busy=51.9)
        with budget.applied() as n:
            assert n == 1 and torch.get_num_threads() == 1
            assert budget.others == pytest.approx(0.9)
            # The neighbour left: within the same rollout the next window gives the core back.
            clock.update(wall=102.0, own=12.9, busy=53.85)
            with budget.applied() as inner:
                assert inner == 2 and torch.get_num_threads() == 2
            clock.update(wall=102.2, own=13.0, busy=54.5)  # within WINDOW_S: no new decision
            with budget.applied() as inner:
                assert inner == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "ADAPTIVE", False)
        clock.update(wall=110.0, own=13.0, busy=70.0)  # a saturated machine, but adaptation is off
        with budget.applied() as n:
            assert n == 2
        monkeypatch.setattr(threads, "ADAPTIVE", True)
        budget.spinning = False  # sleeping waits: a busy neighbour costs no spinning, keep every thread
        with budget.applied() as n:
            assert n == 2
    finally:
        torch.set_num_threads(before)


def test_budget_never_exceeds_torch_setting_or_affinity():
    budget = threads.ThreadBudget()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with budget.applied() as n:
            assert n == 1
        assert budget.threads(64) <= len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_build_name_depends_on_source_and_flags(tmp_path, monkeypatch):
    base = kernels._build_tag(["-O3"])
    assert kernels._build_tag(["-O3"]) == base
    assert kernels._build_tag(["-O2"]) != base
    changed = tmp_path / "decode_cpu.cpp"
    changed.write_text(kernels._SOURCE.read_text() + "\n// another version of aha\n")
    monkeypatch.setattr(kernels, "_SOURCE", changed)
    assert kernels._build_tag(["-O3"]) != base


@pytest.mark.parametrize("cpu_max, cores", [
    ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("max 100000", None), ("", None), ("100000 0", None),
])
def test_quota_cores_rounds_a_cgroup_quota_up_to_whole_cores(cpu_max, cores):
    assert threads.quota_cores(cpu_max) == cores


def test_budget_respects_the_cgroup_quota(monkeypatch):
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1)
    budget = threads.ThreadBudget()
    assert budget.threads(64) == 1
    budget.spinning = False
    assert budget.threads(64) == 1


def _omp_policy_after_import(env: dict, code: str) -> str:
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env | {"PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OMP_WAIT_POLICY'))"],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_importing_aha_leaves_the_openmp_wait_policy_to_the_user():
    assert _omp_policy_after_import({}, "import aha") == "None"
    assert _omp_policy_after_import({"OMP_WAIT_POLICY": "PASSIVE"}, "import aha") == "PASSIVE"
