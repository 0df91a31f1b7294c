"""Stages: each reads top-down and exchanges only run-directory files with the others."""
