"""``cxraug study PROTOCOL``: run, resume or dry-run a study."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def study(
    protocol: Path = typer.Argument(..., help="study protocol YAML (see configs/)"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset root; overrides the protocol's data.root"),
    test_data: Optional[str] = typer.Option(None, "--test-data",
                                            help="external test set replacing the internal test split"),
    out: Optional[Path] = typer.Option(None, "--out", help="output directory (default: protocol output or "
                                                           "runs/<name>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan (units, reuse, rough cost) and exit"),
    executor: str = typer.Option("local", "--executor", help="local (in-process) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto or HOST:PORT"),
) -> None:
    """Run a study: no augmentation vs classical vs generative, repeated, with statistics.
    Example: cxraug study configs/quickstart.yaml --out runs/quickstart"""
    from cxraug.study.protocol import load_protocol
    from cxraug.study.runner import run_study

    proto = load_protocol(protocol)
    out_dir = out or Path(proto.output or f"runs/{proto.name}")
    run_study(proto, out_dir, data_root=data, test_root=test_data, executor=executor, address=address,
              dry_run=dry_run)


def register(app: typer.Typer) -> None:
    """Add ``cxraug study`` to the root app."""
    app.command("study")(study)
