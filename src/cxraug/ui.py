"""Console output: one Rich console, progress bars for long loops, banners."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

console = Console(stderr=True, highlight=False)


def progress_enabled() -> bool:
    return os.environ.get("CXRAUG_PROGRESS", "1") != "0" and sys.stderr.isatty()


def make_progress(enabled: bool = True) -> Progress:
    """A Rich progress bar; silent when ``enabled`` is false or progress is off (not a terminal, CXRAUG_PROGRESS=0)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and progress_enabled()),
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a Rich progress bar (silent when stderr is not a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as prog:
        task = prog.add_task(description, total=total)
        for item in items:
            yield item
            prog.advance(task)


def banner(text: str) -> None:
    console.print(f"[bold yellow]>> {text}[/]")
