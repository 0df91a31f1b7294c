"""Pipelines: several stages over run directories under one pipeline directory (`aha r1`)."""
