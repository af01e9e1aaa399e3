"""Atomic, verifiable file writes: a reader never sees a half-written file, an interrupted write leaves none, and
a file damaged later (truncated, bit-flipped) is detected when it is read back.

* :func:`atomic_path` - every write goes to a temporary file beside the target, is fsynced and renamed onto it.
  A full disk (``ENOSPC``, ``EDQUOT``, ``EFBIG``) raises :class:`DiskFullError` naming the target, which is left
  as it was.
* :func:`write_checked_json` / :func:`read_checked_json` - JSON with a ``sha256`` field over the file's bytes.
* :func:`torch_save` / :func:`torch_load` - weights-only checkpoints ending in a ``cxraug-sha256:`` footer line
  over their bytes (plain ``torch.load`` ignores it).

Files written before checksums existed carry none and are read unverified. Damage raises
:class:`CorruptFileError`.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io as _io
import json
import os
import pickle
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch

from cxraug import faults
from cxraug.errors import CorruptFileError, CxraugError, DiskFullError

#: errno values that mean "no room for this file"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: the key :func:`write_checked_json` adds
CHECKSUM = "sha256"


def disk_full_message(exc: OSError, path: str | os.PathLike[str] | None, kept: bool = False) -> str:
    """The one-line message of a write that found no room (``kept``: the file it would replace is untouched)."""
    where = f" writing {path}" if path is not None else ""
    untouched = "; the file already there is untouched" if kept else ""
    return (f"disk full{where} ({os.strerror(exc.errno or errno.ENOSPC)}){untouched}. Free some space and run the "
            "same command again: a study resumes where it stopped")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``."""
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the mode open() would give
        yield tmp_path
        faults.point(faults.write_phase(path), tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise DiskFullError(disk_full_message(exc, path, kept=True)) from None
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def is_partial(path: Path) -> bool:
    """Whether ``path`` is a temporary file :func:`atomic_path` leaves behind when its process is killed."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def csv_text(rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None, header: bool = True) -> str:
    """The one CSV format of cxraug: ``\\n`` line ends, columns ``fields`` (default: every key of the rows, in
    the order first seen); a row with a key outside ``fields`` is an error."""
    rows = list(rows)
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    if header:
        w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]],
              fields: Sequence[str] | None = None) -> None:
    """:func:`csv_text` written atomically."""
    write_text(path, csv_text(rows, fields))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_ZERO = "0" * 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FOOTER = re.compile(rb"\ncxraug-sha256:([0-9a-f]{64})\n\Z")


def write_checked_json(path: str | os.PathLike[str], obj: dict[str, Any]) -> None:
    """:func:`write_json` of ``obj`` plus a top-level ``sha256`` field: the SHA-256 of the file's bytes with that
    field's value written as 64 zeros."""
    text = json.dumps({**obj, CHECKSUM: _ZERO}, indent=2, sort_keys=True, default=_json_default) + "\n"
    field = f'"{CHECKSUM}": "{_ZERO}"'
    digest = hashlib.sha256(text.encode()).hexdigest()
    write_text(path, text.replace(field, f'"{CHECKSUM}": "{digest}"', 1))


def read_checked_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object written by :func:`write_checked_json`, its checksum verified (and removed)."""
    raw = Path(path).read_bytes()
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(path, f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(path, f"a JSON object was expected, found {type(obj).__name__}")
    stored = obj.pop(CHECKSUM, None)
    if stored is None:  # written before checksums - unless the field's name itself was damaged
        if any(isinstance(v, str) and _HEX64.fullmatch(v) for v in obj.values()):
            raise CorruptFileError(path, "checksum field damaged")
        return obj
    field = f'"{CHECKSUM}": "{stored}"'.encode()
    blanked = raw.replace(field, f'"{CHECKSUM}": "{_ZERO}"'.encode(), 1)
    if blanked == raw or hashlib.sha256(blanked).hexdigest() != stored:
        raise CorruptFileError(path, "checksum mismatch")
    return obj


def torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically, followed by a footer line with the SHA-256 of the checkpoint's bytes (torch
    ignores it). Keep ``obj`` to tensors, numbers, strings, lists and dicts so that :func:`torch_load` can read it
    with ``weights_only=True``."""
    buf = _io.BytesIO()  # serialised in memory: a full disk then fails in a plain write, with its errno
    torch.save(obj, buf)
    payload = buf.getvalue()
    write_bytes(path, payload + b"\ncxraug-sha256:" + hashlib.sha256(payload).hexdigest().encode() + b"\n")


def torch_load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
               checksum: bool = False) -> Any:
    """Load a weights-only checkpoint, verifying its footer when it has one (``checksum``: it must have one, as
    every checkpoint cxraug writes does); a pickled object is refused with a clear message, a truncated or altered
    file raises :class:`CorruptFileError`."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CxraugError(f"checkpoint not found: {path}") from None
    footer = _FOOTER.search(raw[-80:])
    if footer is None and checksum:
        raise CorruptFileError(path, "no checksum footer: truncated, or its footer damaged")
    if footer is not None:
        raw = raw[:-80]
        if hashlib.sha256(raw).hexdigest() != footer.group(1).decode():
            raise CorruptFileError(path, "checksum mismatch")
    try:
        return torch.load(_io.BytesIO(raw), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if footer is None and "unsupported global" in str(exc).lower():  # a whole pickle of other objects
            raise CxraugError(
                f"{path} is not a weights-only cxraug checkpoint (torch.load(weights_only=True) refused it: "
                f"{type(exc).__name__})"
            ) from None
        raise CorruptFileError(path, f"unreadable: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a zip or tensor record that does not read back: damaged
        raise CorruptFileError(path, f"unreadable: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
