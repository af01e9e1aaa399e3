"""Fault-injection harness (tests/test_study_faults.py with a few faults, bench/faults.py with K >= 20).

A small phantom study (one DCGAN unit, two classifier units) run as ``cxraug study`` processes and hurt in every
way the study promises to survive: SIGKILL at seeded event counts spread over every phase (``cxraug.faults``),
damaged unit files and checkpoints, a full disk, two studies on one folder at once, and mutated protocols. Every
fault is named by the moment it hit (``kill@classifier:4``, seed and trial) so that a failure can be reproduced by
setting ``CXRAUG_FAULT`` to that name.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from study_tiny import results_without_timing, tiny_protocol, write_protocol

#: phases of cxraug.faults, in the order a study reaches them
PHASES = ("data", "generator", "checkpoint", "classifier", "result", "output", "report")
#: phases whose every event is a write (an ENOSPC can be injected there); the report's write is its last event
WRITE_PHASES = ("checkpoint", "result", "output")


def fault_protocol(cache_dir: Path) -> dict[str, Any]:
    """The tiny study cut to one classifier seed and no added baselines: 1 generator unit (a DCGAN per class,
    12 steps, a checkpoint every 4 and a kept one at step 4) and 2 classifier units."""
    raw = tiny_protocol(cache_dir, repeats={"classifier_seeds": 1}, training={"add_baselines": False},
                        metrics={"image_metrics": False, "bootstrap": 20})
    raw["generators"]["dcgan"]["config"].update(steps=12, checkpoint_every=4, sample_every=12, keep_steps=[4])
    raw["classifiers"][0]["config"]["epochs"] = 1
    return raw


@dataclass
class Study:
    """One protocol file and the way to run it as a separate process."""

    proto: Path

    def run(self, out: Path, fault: str | None = None, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "CXRAUG_PROGRESS": "0", "CXRAUG_FAULT": fault or "", "COLUMNS": "500"}
        preexec: Callable[[], None] | None = None
        if limit_bytes is not None:  # a file-size limit: writes past it fail in the kernel (EFBIG)
            def preexec() -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        return subprocess.run(self.command(out), env=env, capture_output=True, text=True, preexec_fn=preexec)

    def command(self, out: Path) -> list[str]:
        # one process: the trials count fault events of the driver (worker processes die with it: executors.py)
        return [sys.executable, "-m", "cxraug.cli", "study", str(self.proto), "--out", str(out), "--workers", "1"]

    def start(self, out: Path) -> subprocess.Popen:
        env = {**os.environ, "CXRAUG_PROGRESS": "0", "CXRAUG_FAULT": "", "COLUMNS": "500"}
        return subprocess.Popen(self.command(out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)


def make_study(root: Path, cache_dir: Path) -> Study:
    root.mkdir(parents=True, exist_ok=True)
    return Study(write_protocol(root / "faults.yaml", fault_protocol(cache_dir)))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fingerprint(out: Path) -> dict[str, Any]:
    """What must not change: results.csv (without wall times), summary.csv, comparisons.csv and the numbers the
    report shows (its summary, comparison and headline tables)."""
    from cxraug.report.build import comparison_rows, headline, summary_tables
    from cxraug.report.study_dir import StudyDir

    sd = StudyDir.load(out)
    assert (out / "report.html").is_file()
    return {"results": results_without_timing(out), "summary": _csv_rows(out / "summary.csv"),
            "comparisons": _csv_rows(out / "comparisons.csv"),
            "report": {"summary": summary_tables(sd), "comparisons": comparison_rows(sd), "headline": headline(sd)}}


def reference(study: Study, out: Path) -> tuple[dict[str, Any], Counter]:
    """An uninterrupted run (in this process): its fingerprint and how many events of each phase it passed."""
    from cxraug import faults
    from cxraug.study.protocol import load_protocol
    from cxraug.study.runner import run_study

    counts = out.parent / f"{out.name}.events"
    counts.unlink(missing_ok=True)
    spec, faults._SPEC = faults._SPEC, f"count:{counts}"
    try:
        run_study(load_protocol(study.proto), out)
    finally:
        faults._SPEC = spec
    return fingerprint(out), Counter(counts.read_text().split())


def kill_moments(counts: Counter, k: int, seed: int) -> list[str]:
    """``k`` faults ``kill@PHASE:N``: the phases the reference run passed in a seeded order, in turn (k >= 7
    reaches every phase), N seeded uniform over that phase's events."""
    passed = [p for p in PHASES if counts[p]]
    phases = random.Random(seed).sample(passed, len(passed))
    out = []
    for i in range(k):
        phase = phases[i % len(phases)]
        n = random.Random(f"{seed}/{i}").randint(1, counts[phase])
        out.append(f"kill@{phase}:{n}")
    return out


def enospc_moments(counts: Counter, k: int, seed: int) -> list[str]:
    """``k`` faults ``enospc@PHASE:N`` over the write phases in turn, N seeded; the last one hits report.html."""
    out = [f"enospc@{WRITE_PHASES[i % 3]}:{random.Random(f'{seed}/enospc/{i}').randint(1, counts[WRITE_PHASES[i % 3]])}"
           for i in range(k - 1)]
    return out + [f"enospc@report:{counts['report']}"]


def problems(out: Path) -> list[str]:
    """Files in ``out`` that are partial or do not verify (what a fault must never leave behind)."""
    from cxraug import io
    from cxraug.errors import CxraugError

    bad = [f"partial file {p}" for p in out.rglob("*") if p.is_file() and io.is_partial(p)]
    for p in out.glob("units/*/result.json"):
        try:
            record = io.read_checked_json(p)
        except CxraugError as exc:
            bad.append(str(exc))
            continue
        bad += [f"{p.parent / n} does not match result.json" for n, d in record.get("files", {}).items()
                if io.file_sha256(p.parent / n) != d]
    for p in out.glob("units/*/*/checkpoints/*.pt"):
        try:
            io.torch_load(p, checksum=True)
        except CxraugError as exc:
            bad.append(str(exc))
    return bad


def _units_done(out: Path) -> int:
    return len(list(out.glob("units/*/result.json")))


def _reused(log: str) -> int:
    m = re.search(r"(\d+) already finished \(reused\)", log)
    return int(m.group(1)) if m else -1


def kill_trial(study: Study, out: Path, fault: str, expected: dict[str, Any]) -> dict[str, Any]:
    """Kill a fresh run at ``fault``, run again to completion, compare with the uninterrupted run."""
    shutil.rmtree(out, ignore_errors=True)
    p = study.run(out, fault=fault)
    record: dict[str, Any] = {"fault": fault, "killed": p.returncode == -signal.SIGKILL,
                              "units_done_at_kill": _units_done(out),
                              "partial_files_at_kill": sum(1 for f in out.rglob(".*.tmp") if f.is_file()),
                              "lock_left": (out / ".lock").exists()}
    r = study.run(out)
    log = r.stdout + r.stderr
    record.update(resumed_rc=r.returncode, reused=_reused(log), took_over_lock="took over the stale lock" in log,
                  left_behind=problems(out) + (["lock not released"] if (out / ".lock").exists() else []))
    record["identical"] = r.returncode == 0 and fingerprint(out) == expected
    record["survived"] = (record["killed"] and record["identical"] and not record["left_behind"]
                          and record["reused"] == record["units_done_at_kill"]
                          and record["took_over_lock"] == record["lock_left"])
    if r.returncode != 0:
        record["error"] = log[-2000:]
    return record


# ----------------------------------------------------------------------------- damaged files
DAMAGE = ("truncate", "bitflip", "empty")


def damage(path: Path, how: str, rng: random.Random) -> str:
    """Damage ``path`` in place; returns what was done (bytes, offsets) for the record."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        n = rng.randrange(len(data))
        path.write_bytes(bytes(data[:n]))
        return f"truncated {len(data)} -> {n} bytes"
    if how == "bitflip":
        i, bit = rng.randrange(len(data)), rng.randrange(8)
        data[i] ^= 1 << bit
        path.write_bytes(bytes(data))
        return f"bit {bit} of byte {i} of {len(data)} flipped"
    path.write_bytes(b"")
    return "emptied"


def corruption_trial(study: Study, source: Path, out: Path, target: str, how: str, seed: int,
                     expected: dict[str, Any]) -> dict[str, Any]:
    """Copy the study folder ``source``, damage its file matching glob ``target``, re-run, check that the damage
    was named, moved aside and its unit re-run to the same numbers."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out)
    rng = random.Random(f"{seed}/{target}/{how}")
    path = sorted(out.glob(target))[0]
    rel = str(path.relative_to(out))
    record: dict[str, Any] = {"fault": f"{how} {rel} (seed {seed})", "damage": damage(path, how, rng)}
    r = study.run(out)
    log = " ".join((r.stdout + r.stderr).split())
    quarantined = [q["path"] for q in json.loads((out / "study.json").read_text())["integrity"]["quarantined"]] \
        if r.returncode == 0 else []
    record.update(rc=r.returncode, named=f"{rel} is damaged" in log, quarantined=rel in quarantined,
                  moved_aside=(out / "quarantine" / rel).is_file(), left_behind=problems(out))
    record["identical"] = r.returncode == 0 and fingerprint(out) == expected
    record["detected"] = record["named"] and record["quarantined"] and record["moved_aside"]
    if r.returncode != 0:
        record["error"] = log[-2000:]
    return record


# ----------------------------------------------------------------------------- full disk
def enospc_trial(study: Study, out: Path, expected: dict[str, Any], fault: str | None = None,
                 limit_bytes: int | None = None) -> dict[str, Any]:
    """A fresh run whose disk fills (``enospc@PHASE:N``, or a real kernel file-size limit of ``limit_bytes``):
    one clear message, nothing partial or unverifiable left, and a second run (space freed) matches."""
    shutil.rmtree(out, ignore_errors=True)
    p = study.run(out, fault=fault, limit_bytes=limit_bytes)
    err = p.stdout + p.stderr
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    record: dict[str, Any] = {"fault": fault or f"file-size limit {limit_bytes} bytes", "rc": p.returncode,
                              "message": " ".join(err[err.find("error:"):].split())[:300] if lines else "",
                              "traceback": "Traceback" in err, "left_behind": problems(out),
                              "lock_released": not (out / ".lock").exists()}
    r = study.run(out)
    record["identical"] = r.returncode == 0 and fingerprint(out) == expected
    record["clean_stop"] = (p.returncode == 2 and len(lines) == 1 and "disk full writing" in record["message"]
                            and not record["traceback"] and not record["left_behind"] and record["lock_released"])
    return record


# ----------------------------------------------------------------------------- two studies at once
def concurrent_trial(study: Study, out: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """Start two studies on one fresh folder at the same moment: exactly one runs, the other stops at once with
    the winner's PID and host; the winner's results match."""
    shutil.rmtree(out, ignore_errors=True)
    a, b = study.start(out), study.start(out)
    (a_out, a_err), (b_out, b_err) = a.communicate(), b.communicate()
    runs = {a.pid: (a.returncode, a_out + a_err), b.pid: (b.returncode, b_out + b_err)}
    winners = [pid for pid, (rc, _) in runs.items() if rc == 0]
    losers = [pid for pid, (rc, _) in runs.items() if rc == 2]
    record: dict[str, Any] = {"fault": "two studies started together", "rcs": [a.returncode, b.returncode]}
    if len(winners) == 1 and len(losers) == 1:
        msg = " ".join(runs[losers[0]][1].split())
        record["refused"] = (f"PID {winners[0]} on host {socket.gethostname()}" in msg
                             and "in use by another cxraug study" in msg)
        record["message"] = msg[msg.find("error:"):][:300]
    else:
        record["refused"] = False
    record["identical"] = bool(winners) and fingerprint(out) == expected
    return record


# ----------------------------------------------------------------------------- mutated protocols
def protocol_paths(raw: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key and list-index path of a protocol, depth first."""
    out = [prefix] if prefix else []
    if isinstance(raw, dict):
        for k, v in raw.items():
            out += protocol_paths(v, prefix + (k,))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            out += protocol_paths(v, prefix + (i,))
    return out


def mutation_strategy(base: dict[str, Any]) -> Any:
    """Hypothesis strategy of (description, mutated protocol): 1-3 edits of ``base``, each replacing a value with
    a wrong type, a huge or negative number, unicode, an unknown name or an empty list/dict, deleting a key
    (whole sections included) or adding an unknown field."""
    import copy

    from hypothesis import strategies as st

    paths = [p for p in protocol_paths(base) if p[:2] != ("data", "cache_dir")]  # the cache stays in the test's folder
    values = st.one_of(
        st.none(), st.booleans(), st.sampled_from([0, -1, -10**12, 10**12, 2**63, 10**400 // 10**380]),
        st.integers(-50, 500), st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "unknown", "Unicorn", "ünïcødé ☢ 𝔵", "resnet9000", "COVID", "\x00", "../../etc"]),
        st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3), st.just([]), st.just({}),
        st.dictionaries(st.sampled_from(["x", "size", "name", "ö"]), st.integers(-2, 2), max_size=2))
    edit = st.one_of(st.tuples(st.just("set"), st.sampled_from(paths), values),
                     st.tuples(st.just("delete"), st.sampled_from(paths), st.none()),
                     st.tuples(st.just("add"), st.sampled_from([()] + paths), values))

    def apply(edits: list[tuple]) -> tuple[str, dict[str, Any]]:
        raw = copy.deepcopy(base)
        done = []
        for op, path, value in edits:
            parent, ok = raw, True
            for part in path[:-1] if op != "add" else path:
                try:
                    parent = parent[part]
                except (KeyError, IndexError, TypeError):
                    ok = False
                    break
            if not ok:
                continue
            if op == "add":
                if isinstance(parent, dict):
                    parent["unknown_field"] = value
                    done.append(f"add {_path(path + ('unknown_field',))} = {value!r}")
                continue
            try:
                if op == "set":
                    parent[path[-1]] = value
                    done.append(f"set {_path(path)} = {value!r}")
                else:
                    del parent[path[-1]]
                    done.append(f"delete {_path(path)}")
            except (KeyError, IndexError, TypeError):
                continue
        if isinstance(raw.get("data"), dict):
            raw["data"]["cache_dir"] = base["data"]["cache_dir"]
        return "; ".join(done) or "no edit", raw

    return st.lists(edit, min_size=1, max_size=3).map(apply)


def _path(parts: tuple) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def plan_or_refuse(raw: dict[str, Any], work: Path, data: Path) -> tuple[int, str]:
    """``cxraug study PROTOCOL --dry-run`` in this process (through ``cxraug.cli.main``): (exit code, output).
    Anything but exit 0 or 2 - an uncaught exception in particular - is returned as exit code -1 with its
    traceback."""
    import contextlib
    import io
    import traceback

    from cxraug import cli

    path = work / "mutated.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    argv, cwd, buf = sys.argv, os.getcwd(), io.StringIO()
    sys.argv = ["cxraug", "study", str(path), "--dry-run", "--data", str(data), "--out", str(work / "out")]
    os.chdir(work)  # relative paths in a mutated protocol stay inside the test's folder
    try:
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else -1)
    except BaseException:  # noqa: BLE001 - exactly what the test looks for
        return -1, buf.getvalue() + traceback.format_exc()
    finally:
        sys.argv = argv
        os.chdir(cwd)
    return code, buf.getvalue()



def mutation_setup(work: Path) -> tuple[Path, dict[str, Any]]:
    """(a small phantom dataset, the valid protocol the mutations start from: the tiny study)."""
    from cxraug.data.phantom import write_phantom_dataset

    data = write_phantom_dataset(work / "data", {"COVID": 30, "Normal": 30}, size=40, seed=1)
    return data, tiny_protocol(work / "cache")


def mutation_outcome(what: str, raw: dict[str, Any], work: Path, data: Path) -> str:
    """``planned`` (exit 0), ``refused`` (exit 2, one ``error:`` line naming a field of the edit) or ``crash: ...``
    for anything else (another exit code, a traceback, several or unnamed error lines)."""
    code, output = plan_or_refuse(raw, work, data)
    output = output.replace(str(work), "<tmp>")
    if code == 0:
        return "planned"
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    if code == 2 and len(errors) == 1 and "Traceback" not in output and names_field(what, output):
        return "refused"
    return f"crash: exit {code}: {what}\n{output[-3000:]}"


def names_field(what: str, output: str) -> bool:
    """Whether an error message names a field an edit touched: a named key of some edited path."""
    text = " ".join(output.split())
    for edit in what.split("; "):
        path = edit.split(" ", 1)[1].split(" = ")[0]
        if any(k in text for k in re.split(r"[.\[\]]", path) if k and not k.isdigit()):
            return True
    return False
