"""CLI command groups, one module per concern; `gateway/cli.py` registers them."""
