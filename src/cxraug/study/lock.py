"""One study at a time per output folder: ``OUT/.lock`` holds the PID, host and start of the process using it.

The lock file is written completely under a temporary name and hard-linked into place, which succeeds for exactly
one process and never leaves a half-written lock. A lock whose process is gone (same host, the PID no longer runs
or now belongs to a process started later) is stale: it is taken over with a warning. A lock held on another host
cannot be checked from here and is always refused.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from cxraug.errors import CxraugError
from cxraug.ui import console

LOCK_NAME = ".lock"


def _start_ticks(pid: int) -> str | None:
    """When process ``pid`` started (Linux ``/proc``, clock ticks since boot); None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict[str, Any]) -> bool:
    pid = int(owner["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    started = _start_ticks(pid)
    return started is None or owner.get("ticks") in (None, started)


def _describe(owner: dict[str, Any]) -> str:
    return (f"PID {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started', '?')}: "
            f"{owner.get('command', '?')}")


class OutputLock:
    """``with OutputLock(out):`` - hold ``out``'s lock for the block (released on any exit but SIGKILL; a folder
    the lock created is removed again when nothing was written into it). ``took_over``: the stale owner replaced."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self.took_over: dict[str, Any] | None = None
        self._created = False

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            owner = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            owner = None
        if not isinstance(owner, dict) or not str(owner.get("pid", "")).isdigit():
            raise CxraugError(f"{self.path} is not a cxraug lock; if no study uses {self.path.parent}, delete it")
        return owner

    def _link(self, record: dict[str, Any]) -> bool:
        tmp = self.path.with_name(f".lock.{os.getpid()}.new")
        tmp.write_text(json.dumps(record))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def __enter__(self) -> "OutputLock":
        self._created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "ticks": _start_ticks(os.getpid()),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        for _ in range(3):
            if self._link(record):
                return self
            owner = self._read(self.path)
            if owner is None:  # released in between
                continue
            if owner.get("host") != record["host"] or _alive(owner):
                raise CxraugError(f"{self.path.parent} is in use by another cxraug study ({_describe(owner)}); "
                                  f"wait for it to end or use another --out. If no such process runs on "
                                  f"{owner.get('host')}, delete {self.path}")
            self._take_over(owner)
        raise CxraugError(f"could not take the lock {self.path}: other processes keep taking it")

    def _take_over(self, owner: dict[str, Any]) -> None:
        """Move the stale lock aside; if it changed hands meanwhile (another process took it over first), put the
        live one back."""
        grave = self.path.with_name(f".lock.stale-{os.getpid()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        moved = self._read(grave)
        if moved != owner:
            try:
                os.link(grave, self.path)
            except FileExistsError:
                pass
        else:
            self.took_over = owner
            console.print(f"[yellow]warning[/]: took over the stale lock of a study that no longer runs "
                          f"({_describe(owner)})")
        grave.unlink()

    def __exit__(self, *exc: object) -> None:
        try:
            owner = self._read(self.path)
        except CxraugError:
            return
        if owner is not None and int(owner["pid"]) == os.getpid():
            self.path.unlink(missing_ok=True)
            if self._created and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()  # a run that stopped before writing anything leaves no folder behind
