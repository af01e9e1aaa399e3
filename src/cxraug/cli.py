"""The ``cxraug`` command line. Thin: every command lives in its package's ``commands.py``."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from cxraug import __version__
from cxraug.errors import CxraugError
from cxraug.ui import console

app = typer.Typer(
    name="cxraug",
    help="Does synthetic data from a generative model help a chest X-ray classifier? "
    "Example: cxraug study quickstart --out runs/quickstart",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    from cxraug.classifiers import commands as classifiers
    from cxraug.data import commands as data
    from cxraug.generators import commands as generators
    from cxraug.metrics import commands as metrics
    from cxraug.report import commands as report
    from cxraug.study import commands as study

    for module in (data, classifiers, metrics, generators, study, report):
        module.register(app)


@app.command()
def version() -> None:
    """Print the cxraug version. Example: cxraug version"""
    print(__version__)


_register_all()


def main() -> None:
    """Entry point: user errors and a full disk print one line and exit 2, never a traceback."""
    from cxraug.io import DISK_FULL, disk_full_message

    try:
        app()
    except CxraugError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")  # the message is text, not Rich markup
        sys.exit(2)
    except OSError as exc:  # a full disk outside cxraug.io's atomic writes (a library writing its own files)
        if exc.errno not in DISK_FULL:
            raise
        console.print(f"[bold red]error:[/] {disk_full_message(exc, exc.filename)}")
        sys.exit(2)


if __name__ == "__main__":
    main()
