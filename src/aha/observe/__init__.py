"""Watching a run: per-step behaviour metrics, aha detection, failure monitors, cost, the report.

Submodules import matplotlib and Chromium helpers only where needed, so the trainer can import
`aha.observe.metrics` / `monitors` / `cost` cheaply.
"""
