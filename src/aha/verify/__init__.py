"""Verifiers shared by tasks: bounded-time process pool and math answer equivalence."""
