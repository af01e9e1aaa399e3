"""``cxraug data ...`` commands: phantom, inspect."""

import typer

data_app = typer.Typer(help="Datasets: write the phantom dataset, inspect a folder. Example: cxraug data inspect ROOT",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    app.add_typer(data_app, name="data")
