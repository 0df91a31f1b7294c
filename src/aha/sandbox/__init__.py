"""Local sandbox for untrusted code (the code task's verifier). See `runner` for the walls."""

from aha.sandbox.runner import SandboxLimits, SandboxResult, isolation, run_many, run_python

__all__ = ["SandboxLimits", "SandboxResult", "isolation", "run_many", "run_python"]
