"""CLI commands of cxraug.generators (registered on the root Typer app by cxraug.cli)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app."""
