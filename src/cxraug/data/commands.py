"""``cxraug data ...`` commands: phantom, inspect."""

import json
from pathlib import Path
from typing import Literal

import typer

from cxraug.data.layouts import LAYOUTS
from cxraug.data.phantom import DEFAULT_SEVERITY, parse_counts, write_phantom_dataset
from cxraug.ui import console

data_app = typer.Typer(help="Datasets: write the phantom dataset, inspect a folder. Example: cxraug data inspect ROOT",
                       no_args_is_help=True)


@data_app.command("phantom")
def phantom(
    out: Path = typer.Option(..., "--out", help="Folder to create (must not exist or be empty)."),
    n_per_class: str = typer.Option("200", "--n-per-class",
                                    help="Images per class: one number, or per class as COVID=50,Normal=200."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same bytes)."),
    severity: float = typer.Option(DEFAULT_SEVERITY, "--severity",
                                   help="Lesion strength: 0 makes every class Normal, higher separates them."),
) -> None:
    """Write the synthetic phantom dataset (test data, NOT medical data) in the Kaggle layout with lung masks.
    Example: cxraug data phantom --out runs/phantom --n-per-class 200 --size 128 --seed 0"""
    root = write_phantom_dataset(out, parse_counts(n_per_class), size=size, seed=seed, severity=severity)
    console.print(f"wrote synthetic phantoms (not medical data) to {root}")


@data_app.command("inspect")
def inspect(
    root: Path = typer.Argument(..., help="Dataset folder or manifest CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    layout: Literal[LAYOUTS] = typer.Option("auto", "--layout", help="Dataset layout (auto: detected)."),
    size: int = typer.Option(64, "--size", help="Side of the preprocessed images that are hashed."),
    val_frac: float = typer.Option(0.15, "--val-frac", help="Validation fraction of the audited split."),
    test_frac: float = typer.Option(0.15, "--test-frac", help="Test fraction of the audited split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the audited patient split."),
    max_distance: int = typer.Option(12, "--max-distance", help="Near-duplicate pHash distance (bits of 64)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Preprocessed-image cache folder."),
) -> None:
    """Classes, usable images, sizes, modes, skipped files, duplicates, split leakage, source/population
    shortcuts. Example: cxraug data inspect ../shared/data/cxr/dev --json"""
    from cxraug.data.audit import inspect_dataset, print_report

    report = inspect_dataset(root, layout, size, val_frac, test_frac, seed, max_distance, cache_dir)
    if as_json:
        print(json.dumps(report, default=str))
    else:
        print_report(report)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    app.add_typer(data_app, name="data")
