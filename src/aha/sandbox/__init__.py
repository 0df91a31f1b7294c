"""Local sandbox for untrusted code (the code task's verifier). See `runner` for the walls and
`judge` for how verdicts are reached without trusting the candidate's process."""

from aha.sandbox.runner import SandboxLimits, SandboxResult, run_judged, run_many, run_python
from aha.sandbox.walls import isolation

__all__ = ["SandboxLimits", "SandboxResult", "isolation", "run_judged", "run_many", "run_python"]
