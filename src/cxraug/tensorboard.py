"""TensorBoard event files (``pip install 'cxraug[tensorboard]'``) for generator and classifier runs.

``summary_writer(folder, enabled)``: ``enabled=None`` writes them when TensorBoard is installed and otherwise
says once per process that it does not (with what to install); ``True`` requires it (one-line error when
missing); ``False`` turns them off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cxraug.errors import CxraugError

TensorboardOption = Annotated[Optional[bool], typer.Option(
    "--tensorboard/--no-tensorboard", help="TensorBoard event files in OUT/tb (default: when tensorboard is "
    "installed; pip install 'cxraug\\[tensorboard]').")]

_noted = False


def summary_writer(folder: str | Path, enabled: bool | None = None) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``folder``, or None (see the module docstring)."""
    global _noted
    if enabled is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if enabled:
            raise CxraugError("TensorBoard event files need tensorboard: pip install 'cxraug[tensorboard]'") from None
        if not _noted:
            from cxraug.ui import console

            console.print("[yellow]note[/]: no TensorBoard event files: pip install 'cxraug\\[tensorboard]' to get them")
            _noted = True
        return None
    return SummaryWriter(str(folder))
