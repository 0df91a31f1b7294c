"""`python -m aha` — the same CLI as the `aha` command."""

from aha.cli import main

main()
