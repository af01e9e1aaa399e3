"""``cxraug report OUT``: rebuild a study's HTML report from its results."""

from pathlib import Path

import typer


def report(out: Path = typer.Argument(..., help="Study output folder (holds results.csv and summary.csv).")) -> None:
    """Rebuild OUT/report.html (self-contained) from a finished or interrupted study's results.
    Example: cxraug report runs/quickstart"""
    from cxraug.report import build_report
    from cxraug.ui import console

    console.print(f"report: {build_report(out)}")


def register(app: typer.Typer) -> None:
    """Add ``cxraug report`` to the root app."""
    app.command("report")(report)
