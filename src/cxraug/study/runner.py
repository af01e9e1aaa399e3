"""The study driver: load data, plan, run what is not finished yet, then write every output
(:mod:`cxraug.study.outputs`).

Only the driver writes ``OUT``; units return their results (see :mod:`cxraug.study.units`). Each finished
unit is stored atomically under ``OUT/units/<key>/`` before the next one starts, so a study killed at any
moment resumes where it stopped and ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from cxraug import io
from cxraug.device import resolve_device, set_threads
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.metrics.encoder import EncoderConfig
from cxraug.metrics.features import get_extractor
from cxraug.study.baselines import complete_arms
from cxraug.study.cost import estimate_plan
from cxraug.study.data import StudyData, load_study_data, sizes_needed
from cxraug.study.executors import LocalExecutor, RayExecutor, Task, default_workers
from cxraug.study.lock import OutputLock
from cxraug.study.outputs import track_unit, write_outputs
from cxraug.study.plan import DataInfo, Plan, build_plan, describe
from cxraug.study.protocol import Protocol
from cxraug.study.store import UnitStore, remove_partial
from cxraug.study.track import StudyTracking
from cxraug.study.units import OK, run_classifier_unit, run_generator_unit
from cxraug.tracking import MlflowTracker
from cxraug.ui import banner, console


def _executor(name: str, address: str | None, proto: Protocol, workers: int = 1) -> LocalExecutor | RayExecutor:
    if name == "local":
        if address:
            raise CxraugError("--address is only used with --executor ray")
        return LocalExecutor(workers)
    if workers != 1:
        raise CxraugError("--workers is only used with --executor local (Ray schedules by execution.threads)")
    if name == "ray":
        return RayExecutor(address=address, retries=proto.execution.retries)
    raise CxraugError(f"unknown executor {name!r}; use local or ray")


def study_extractor(proto: Protocol, data: StudyData, data_size: int, device: str) -> Any:
    """The feature extractor for generator scoring and image metrics (domain encoder trained on the
    real training fold, cached by content hash)."""
    if not proto.metrics.image_metrics:
        return None

    return get_extractor(proto.metrics.features, train=data.splits[data_size].train,
                         cache_dir=proto.data.cache_dir, encoder=EncoderConfig(**proto.metrics.encoder),
                         device=str(resolve_device(device)))


def _tasks(plan: Plan, store: UnitStore, proto: Protocol, data: StudyData, extractor: Any) -> list[Task]:
    ex = proto.execution
    data_size, _, _ = sizes_needed(proto)
    tasks = []
    for unit in plan.units:
        if store.done(unit.key):
            continue
        f = unit.fields
        if unit.kind == "generator":
            size = _gen_size(proto, f["generator"])
            kwargs = {"spec": unit.spec, "train": data.subsets[(f["regime"], f["draw"], size)],
                      "val": data.splits[size].val, "work_dir": str(store.folder(unit.key)),
                      "threads": ex.threads, "device": ex.device, "extractor": extractor,
                      "cache_dir": proto.data.cache_dir}
            fn = run_generator_unit
        else:
            size = unit.spec.size or data_size
            kwargs = {"spec": unit.spec, "train": data.subsets[(f["regime"], f["draw"], size)],
                      "val": data.splits[size].val, "test": data.test[size], "threads": ex.threads,
                      "device": ex.device}
            fn = run_classifier_unit
        tasks.append(Task(key=unit.key, label=unit.label, fn=fn, kwargs=kwargs, needs=unit.needs,
                          cpus=ex.threads, gpus=ex.gpus, cost_s=unit.cost_s))
    return tasks


def _gen_size(proto: Protocol, name: str) -> int:
    spec = proto.generators[name]
    return GENERATORS.get(spec.model).Config(**spec.config).size


def run_study(proto: Protocol, out: Path, data_root: str | None = None, test_root: str | None = None,
              executor: str = "local", address: str | None = None, dry_run: bool = False,
              tracker: MlflowTracker | None = None, workers: int = 1) -> Path:
    """Run (or resume) a study; returns the output directory. A real run holds ``OUT/.lock`` from its first
    moment (:class:`cxraug.study.lock.OutputLock`); a dry run only reads. With a ``tracker`` every finished unit
    and the study itself are logged to it as well (:mod:`cxraug.study.track`). ``workers``: units at once with
    the local executor (``cxraug study`` defaults to :func:`cxraug.study.executors.default_workers`)."""
    if dry_run:
        _run(proto, out, data_root, test_root, executor, address, dry_run=True, workers=workers)
        return out
    with OutputLock(out) as lock:
        _run(proto, out, data_root, test_root, executor, address, dry_run=False,
             stale=lock.took_over is not None, tracker=tracker, workers=workers)
    return out


def _run(proto: Protocol, out: Path, data_root: str | None, test_root: str | None, executor: str,
         address: str | None, dry_run: bool, stale: bool = False, tracker: MlflowTracker | None = None,
         workers: int = 1) -> None:
    t0 = time.time()
    set_threads(proto.execution.threads)
    data = load_study_data(proto, data_root, test_root)
    if data.source == "phantom":
        banner("data: phantom - synthetic test data, not medical data; results say nothing about X-rays")
    proto, added = complete_arms(proto, data.classes)
    for note in added:
        console.print(f"[yellow]note[/]: {note}")
    data_size, _, _ = sizes_needed(proto)
    info = DataInfo(fingerprint=data.fingerprint, classes=data.classes, counts=data.counts(data_size),
                    sizes_fingerprint=data.fingerprints,
                    test_fingerprint=data.test_fingerprint, size=data_size)
    plan = build_plan(proto, info)
    store = UnitStore(out)
    integrity: dict[str, Any] = {}
    if not dry_run:
        integrity = {"stale_lock_taken_over": stale, "partial_files_removed": remove_partial(out),
                     "quarantined": store.repair(plan)}
    done = {u.key for u in plan.units if store.done(u.key)}
    for line in describe(plan, done):
        console.print(line)
    estimate = estimate_plan(plan, proto, data, data_size, done,
                             workers if executor == "local" else default_workers(proto.execution.threads))
    console.print(estimate.line())
    stray = store.finished_keys() - {u.key for u in plan.units}
    if stray:
        console.print(f"[yellow]note[/]: {len(stray)} finished unit(s) in {store.root} are not in this plan and are "
                      "not reused: another protocol, or a study folder of a cxraug before unit keys hashed only the "
                      "image sizes a unit reads; their units run again")
    if dry_run:
        return
    tracking = None if tracker is None else StudyTracking(tracker, proto, out, data.classes)
    out.mkdir(parents=True, exist_ok=True)
    io.write_text(out / "protocol.yaml", yaml.safe_dump(proto.model_dump(mode="json"), sort_keys=False))
    io.write_json(out / "plan.json", [{"key": u.key, "kind": u.kind, "fields": u.fields, "needs": u.needs}
                                      for u in plan.units])
    pending_gens = [u for u in plan.of_kind("generator") if u.key not in done]
    extractor = study_extractor(proto, data, data_size, proto.execution.device) if pending_gens else None
    tasks = _tasks(plan, store, proto, data, extractor)
    by_key = plan.by_key()

    def upstream(key: str) -> dict[str, Any]:
        res = store.load(key)
        if res.get("status", OK) != OK:
            return res
        return {"pool": store.load_pool(key), "curation": res.get("curation", {})}

    def on_result(task: Task, result: dict[str, Any]) -> None:
        unit = by_key[task.key]
        store.save(unit, result)
        if tracking is not None:
            track_unit(tracking, unit, store)

    if tasks:
        _executor(executor, address, proto, workers).run(tasks, upstream, on_result)
    write_outputs(proto, plan, store, data, out, wall_s=time.time() - t0, executor=executor, added=added,
                  integrity=integrity, tracking=tracking, estimate=estimate)
