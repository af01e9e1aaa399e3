"""``cxraug study PROTOCOL``: run, resume or dry-run a study; ``cxraug protocols``: the shipped protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from cxraug.tracking import TrackingUri, TrackOption


def study(
    protocol: str = typer.Argument(..., help="study protocol: a YAML file or the name of a shipped protocol "
                                             "(cxraug protocols lists them)"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset root; overrides the protocol's data.root"),
    test_data: Optional[str] = typer.Option(None, "--test-data",
                                            help="external test set replacing the internal test split"),
    out: Optional[Path] = typer.Option(None, "--out", help="output directory (default: protocol output or "
                                                           "runs/<name>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan (units, reuse, estimated wall time from step times measured on this machine) and exit"),
    executor: Literal["local", "ray"] = typer.Option("local", "--executor", help="local (in-process) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto or HOST:PORT"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="local executor: units run at once, "
                                          "each in its own process with the protocol's execution.threads; default "
                                          "this machine's cores // execution.threads (2 cores, threads 2: 1). The "
                                          "numbers do not depend on it"),
    track: TrackOption = "none",
    tracking_uri: TrackingUri = None,
) -> None:
    """Run a study: no augmentation vs classical vs generative, repeated, with statistics.
    Example: cxraug study quickstart --out runs/quickstart"""
    from cxraug.study.protocol import load_protocol
    from cxraug.study.runner import run_study
    from cxraug.tracking import make_tracker

    from cxraug.study.executors import default_workers

    proto = load_protocol(protocol)
    if workers is None:
        workers = default_workers(proto.execution.threads) if executor == "local" else 1
    out_dir = out or Path(proto.output or f"runs/{proto.name}")
    tracker = None if dry_run else make_tracker(track, tracking_uri)
    run_study(proto, out_dir, data_root=data, test_root=test_data, executor=executor, address=address,
              dry_run=dry_run, tracker=tracker, workers=workers)


def protocols() -> None:
    """List the protocols shipped with cxraug, one line each (run one with cxraug study NAME).
    Example: cxraug protocols"""
    import yaml

    from cxraug.study.protocol import shipped_protocols

    shipped = shipped_protocols()
    width = max(map(len, shipped))
    for name, path in shipped.items():
        description = (yaml.safe_load(path.read_text()) or {}).get("description") or ""
        print(f"{name:<{width}}  {description}")


def register(app: typer.Typer) -> None:
    """Add ``cxraug study`` and ``cxraug protocols`` to the root app."""
    app.command("study")(study)
    app.command("protocols")(protocols)
