"""What a study survives, measured (issue 21); prints JSON.

The harness of ``tests/fault_harness.py`` on its small phantom study (one DCGAN unit, two classifier units), with
more faults than the test suite runs:

* ``--kills K`` SIGKILLs at seeded event counts spread over every phase (data loading, generator steps, checkpoint
  writes, classifier steps, unit-result writes, output writes, report building), each followed by a re-run to the
  end, compared with an uninterrupted run (results.csv, summary.csv, comparisons.csv, the report's numbers);
* damaged files (truncated, one bit flipped, emptied): each unit file of a finished study and two generator
  checkpoints of an interrupted one;
* ``--enospc N`` full-disk faults at seeded writes, plus real kernel write failures under two file-size limits;
* ``--concurrent N`` pairs of studies started together on one folder;
* ``--mutations N`` mutated protocols (hypothesis) through ``cxraug study --dry-run``.

Every fault is named (``kill@classifier:5``...) so that one can be replayed with ``CXRAUG_FAULT=<name>``. Run::

    nice -n 10 .venv/bin/python bench/faults.py --kills 21 --seed 0 --out runs/bench_faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("CXRAUG_PROGRESS", "0")

from fault_harness import (DAMAGE, concurrent_trial, corruption_trial, enospc_moments,  # noqa: E402
                           enospc_trial, kill_moments, kill_trial, make_study, mutation_outcome, mutation_setup,
                           mutation_strategy, reference)

#: files damaged in a finished study (one per unit kind) and, for checkpoints, in an interrupted one
FINISHED_TARGETS = ("units/*/pool.npz", "units/*/history.csv", "units/*/result.json")
CHECKPOINT_TARGETS = ("units/*/COVID/checkpoints/last.pt", "units/*/Normal/checkpoints/step_0000004.pt")
FILE_LIMITS = (4 * 1024, 64 * 1024)


def interrupted_copy(finished: Path, out: Path) -> Path:
    """The finished study as a kill after its generator's checkpoints (before its result) leaves it."""
    shutil.copytree(finished, out)
    for gen in [p.parent for p in out.glob("units/*/pool.npz")]:
        (gen / "result.json").unlink()
        (gen / "pool.npz").unlink()
    return out


def mutations(n: int, work: Path) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings

    data, base = mutation_setup(work)
    outcomes: list[str] = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(mutation_strategy(base))
    def run(case: tuple[str, dict[str, Any]]) -> None:
        outcomes.append(mutation_outcome(*case, work, data))

    run()
    crashes = [o for o in outcomes if o.startswith("crash")]
    return {"tried": len(outcomes), "planned": outcomes.count("planned"), "refused_exit_2": outcomes.count("refused"),
            "crashed": len(crashes), "crashes": crashes[:5]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=21)
    ap.add_argument("--enospc", type=int, default=7)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--mutations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    if args.kills < 1 or args.enospc < 1:
        ap.error("--kills and --enospc must be >= 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="cxraug-faults-"))
    t0 = time.time()
    study = make_study(work, work / "cache")
    from cxraug.study.protocol import load_protocol
    from cxraug.study.runner import run_study

    run_study(load_protocol(study.proto), work / "warm", dry_run=True)
    expected, counts = reference(study, work / "reference")

    kills = [kill_trial(study, work / "kill", f, expected) for f in kill_moments(counts, args.kills, args.seed)]
    interrupted = interrupted_copy(work / "reference", work / "interrupted")
    damaged = [corruption_trial(study, work / "reference", work / "damaged", t, how, args.seed, expected)
               for t in FINISHED_TARGETS for how in DAMAGE]
    damaged += [corruption_trial(study, interrupted, work / "damaged", t, how, args.seed, expected)
                for t in CHECKPOINT_TARGETS for how in DAMAGE]
    full = [enospc_trial(study, work / "full", expected, fault=f)
            for f in enospc_moments(counts, args.enospc, args.seed)]
    full += [enospc_trial(study, work / "full", expected, limit_bytes=b) for b in FILE_LIMITS]
    twice = [concurrent_trial(study, work / "twice", expected) for _ in range(args.concurrent)]
    mutated = mutations(args.mutations, work / "mutations")

    def bad(records: list[dict[str, Any]], ok: str) -> list[dict[str, Any]]:
        return [r for r in records if not r[ok]]

    result = {
        "command": " ".join(["bench/faults.py", *sys.argv[1:]]), "seed": args.seed,
        "reference_events": dict(counts),
        "kills": {"tried": len(kills), "survived": sum(r["survived"] for r in kills),
                  "identical": sum(r["identical"] for r in kills),
                  "by_phase": {p: sum(r["fault"].split("@")[1].startswith(p + ":") for r in kills)
                               for p in counts},
                  "units_done_at_kill": [r["units_done_at_kill"] for r in kills],
                  "partial_files_at_kill": sum(r["partial_files_at_kill"] for r in kills),
                  "stale_locks_taken_over": sum(r["took_over_lock"] for r in kills),
                  "failed": bad(kills, "survived")},
        "damaged_files": {"planted": len(damaged), "detected": sum(r["detected"] for r in damaged),
                          "identical_after_rerun": sum(r["identical"] for r in damaged),
                          "failed": [r for r in damaged if not (r["detected"] and r["identical"])]},
        "disk_full": {"cases": len(full), "clean_stops": sum(r["clean_stop"] for r in full),
                      "identical_after_rerun": sum(r["identical"] for r in full),
                      "faults": [r["fault"] for r in full], "example_message": full[0]["message"],
                      "failed": [r for r in full if not (r["clean_stop"] and r["identical"])]},
        "concurrent": {"tried": len(twice), "refused": sum(r["refused"] for r in twice),
                       "identical": sum(r["identical"] for r in twice),
                       "example_message": next((r["message"] for r in twice if r.get("message")), ""),
                       "failed": [r for r in twice if not (r["refused"] and r["identical"])]},
        "mutated_protocols": mutated,
        "wall_s": round(time.time() - t0, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
