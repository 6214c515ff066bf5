"""The evaluation subcommands of ``python -m inference.evaluate`` (one module each)."""
