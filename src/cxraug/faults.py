"""Fault injection for the crash-recovery tests; inert unless the ``CXRAUG_FAULT`` environment variable is set.

* ``CXRAUG_FAULT=kill@PHASE:N`` - SIGKILL this process at the N-th event of PHASE.
* ``CXRAUG_FAULT=enospc@PHASE:N`` - the N-th write event of PHASE fails as on a full disk (the temporary file is
  cut to half its size, then ``OSError(ENOSPC)`` is raised).
* ``CXRAUG_FAULT=count:FILE`` - append each event's phase to FILE (the event counts of a reference run).

Phases: ``data`` (a dataset size or training subset loaded by a study), ``generator`` / ``classifier`` (an
optimiser step), and the atomic writes (:func:`cxraug.io.atomic_path`, hit after the temporary file is complete and
before it replaces the target): ``checkpoint`` (``*.pt``), ``result`` (``units/<key>/`` files), ``report``
(``report.html``; building the report is also an event), ``output`` (any other file). Used by
``tests/fault_harness.py`` (``tests/test_study_faults.py``, ``bench/faults.py``).
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

_SPEC = os.environ.get("CXRAUG_FAULT", "")
_counts: dict[str, int] = {}


def write_phase(path: Path) -> str:
    """The phase of an atomic write of ``path``."""
    if path.suffix == ".pt":
        return "checkpoint"
    if path.name == "report.html":
        return "report"
    return "result" if path.parent.parent.name == "units" else "output"


def point(phase: str, tmp: Path | None = None) -> None:
    """One event of ``phase`` (``tmp``: the temporary file of a write event)."""
    if not _SPEC:
        return
    if _SPEC.startswith("count:"):
        with open(_SPEC[len("count:"):], "a") as f:
            f.write(phase + "\n")
        return
    action, _, target = _SPEC.partition("@")
    name, _, n = target.partition(":")
    if name != phase:
        return
    _counts[phase] = _counts.get(phase, 0) + 1
    if _counts[phase] != int(n):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "enospc" and tmp is not None:
        os.truncate(tmp, tmp.stat().st_size // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
