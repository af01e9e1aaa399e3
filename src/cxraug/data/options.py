"""Command-line options shared by every command that loads, preprocesses and splits a dataset.

Typer ``Annotated`` aliases, so that the flags, their help and their types are written once:
``def cmd(clahe: Clahe = False, val_frac: ValFrac = 0.15, ...)``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Clahe = Annotated[bool, typer.Option("--clahe", help="CLAHE in preprocessing.")]
MaskCrop = Annotated[bool, typer.Option("--mask-crop", help="Crop to the lung mask's box where masks exist.")]
ValFrac = Annotated[float, typer.Option("--val-frac", help="Validation fraction of the patient-level split.")]
TestFrac = Annotated[float, typer.Option("--test-frac", help="Test fraction of the patient-level split (held out).")]
SplitSeed = Annotated[int, typer.Option("--split-seed", help="Seed of the patient split and the regime draw.")]
CacheDir = Annotated[Optional[str], typer.Option("--cache-dir", help="Preprocessed-image cache folder.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Devices = Annotated[int, typer.Option("--devices", help="DDP processes for one model (GPUs, or CPU processes).")]
