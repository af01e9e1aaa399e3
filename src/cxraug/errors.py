"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class CxraugError(Exception):
    """An impossible request (bad path, empty class, unknown model, invalid config field)."""


class MissingWeightsError(CxraugError):
    """Pretrained weights are needed but cannot be found locally or downloaded."""
