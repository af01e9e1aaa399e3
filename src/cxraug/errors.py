"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class CxraugError(Exception):
    """An impossible request (bad path, empty class, unknown model, invalid config field)."""


class MissingWeightsError(CxraugError):
    """Pretrained weights are needed but cannot be found locally or downloaded."""


class CorruptFileError(CxraugError):
    """A file cxraug wrote earlier no longer reads back: truncated, bit-flipped, or its checksum does not match."""

    def __init__(self, path: object, why: str) -> None:
        self.path = str(path)
        self.why = why
        super().__init__(f"{path} is damaged ({why})")


class DiskFullError(CxraugError):
    """A write failed for lack of space (or a file-size limit); the file it was replacing is untouched."""
