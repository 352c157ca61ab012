"""`edge-proxy customers ...` and `edge-proxy meters ...`: billing commands, each printing JSON."""
from __future__ import annotations


def add_commands(sub, store_command) -> None:
    """Register the billing subcommands on the CLI's subparsers. `store_command(fn)` wraps an
    `async fn(args, store)` so that it runs with the store open and its return value printed as JSON."""
