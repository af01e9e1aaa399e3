"""``--config FILE.yaml`` for the training commands: the file sets options and config fields, the command line
overrides the file, and the file overrides the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from cxraug.errors import CxraugError

ConfigFile = Annotated[Optional[Path], typer.Option(
    "--config", help="YAML file of options (names as on the command line, with _ or -) and config fields; "
    "options given on the command line override it.")]


def merge_config_file(ctx: typer.Context, path: Path | None,
                      aliases: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the command's parameters with the file's values wherever the command line gave none, the file's other
    keys). ``aliases`` maps file keys to parameter names (``class`` -> ``cls``)."""
    params = dict(ctx.params)
    if path is None:
        return params, {}
    if not path.is_file():
        raise CxraugError(f"--config: file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CxraugError(f"--config {path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CxraugError(f"--config {path}: expected a mapping of option: value, got {type(raw).__name__}")
    rest: dict[str, Any] = {}
    for key, value in raw.items():
        name = (aliases or {}).get(str(key), str(key).replace("-", "_"))
        if name == "config":
            raise CxraugError(f"--config {path}: a config file cannot name another config file")
        if name not in params:
            rest[str(key)] = value
        elif not given(ctx, name):
            params[name] = value
    return params, rest


def given(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` was set on the command line (or by its environment variable)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
