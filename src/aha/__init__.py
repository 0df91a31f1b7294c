"""aha — the DeepSeek-R1 recipe end to end, and the place to watch the aha moment happen."""

__version__ = "0.1.0"
