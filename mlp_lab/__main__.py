"""`python -m mlp_lab` is the same as the `mlp-lab` command."""

from mlp_lab.cli import main

main()
