"""Executors run units and hand each result back to the driver, which alone writes the output directory.

* :class:`LocalExecutor` - on this machine: one unit after another in this process (``workers=1``), or up to
  ``workers`` units at once in worker processes, each unit with the protocol's ``execution.threads``; units are
  started as soon as their generator unit is done, longest expected first. Every unit sets its own threads and
  seeds, so the numbers do not depend on the number of workers.
* :class:`RayExecutor` - each unit a Ray task with its CPU/GPU needs (``pip install cxraug[ray]``); a unit
  whose worker dies is re-run (``execution.retries``); workers need not share the driver's filesystem for
  results (only a generator's in-progress checkpoints live in its work folder).

A unit function takes its inputs as arguments (images travel with the task) and returns a dict; the
result of a generator unit is handed to the classifier units that need it as ``upstream``.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

from cxraug.errors import CxraugError
from cxraug.ui import console, make_progress

OnResult = Callable[["Task", dict[str, Any]], None]


@dataclass
class Task:
    """One unit to run: ``fn(**kwargs, upstream=<result of task needs>)``."""

    key: str
    label: str
    fn: Callable[..., dict[str, Any]]
    kwargs: dict[str, Any]
    needs: str | None = None
    cpus: int = 1
    gpus: float = 0.0
    cost_s: float = 0.0  # expected seconds (scheduling order only)


def _announce(done: int, total: int, task: Task, result: dict[str, Any]) -> None:
    console.print(f"[{done}/{total}] finished {task.label} ({result.get('wall_s', 0.0):.1f} s)")


def default_workers(threads: int, cpus: int | None = None) -> int:
    """Units at once on this machine: its cores divided by the threads of one unit (at least 1)."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, threads))


class LocalExecutor:
    """Runs units on this machine: in this process one after another (``workers=1``; tasks arrive ordered,
    generators before their consumers), or in ``workers`` spawned worker processes."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise CxraugError(f"--workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, tasks: list[Task], upstream: Callable[[str], dict[str, Any]], on_result: OnResult) -> None:
        if self.workers > 1 and len(tasks) > 1:
            self._run_parallel(tasks, upstream, on_result)
            return
        results: dict[str, dict[str, Any]] = {}
        with make_progress() as prog:
            bar = prog.add_task("study units", total=len(tasks))
            for i, task in enumerate(tasks, 1):
                up = None
                if task.needs is not None:
                    up = results[task.needs] if task.needs in results else upstream(task.needs)
                result = task.fn(**task.kwargs, upstream=up)
                if any(t.needs == task.key for t in tasks[i:]):
                    results[task.key] = result
                on_result(task, result)
                _announce(i, len(tasks), task, result)
                prog.advance(bar)


    def _run_parallel(self, tasks: list[Task], upstream: Callable[[str], dict[str, Any]],
                      on_result: OnResult) -> None:
        """Dependency- and cost-ordered scheduling over a process pool; the driver alone calls ``on_result``."""
        keys = {t.key for t in tasks}
        waiting = sorted(tasks, key=lambda t: -t.cost_s)  # longest first among the ready ones
        results: dict[str, dict[str, Any]] = {}
        consumers = {t.needs for t in tasks if t.needs is not None}
        running: dict[Future, Task] = {}
        done = 0
        with make_progress() as prog, ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
            bar = prog.add_task("study units", total=len(tasks))
            while waiting or running:
                for task in [t for t in waiting if t.needs is None or t.needs not in keys or t.needs in results]:
                    if len(running) >= self.workers:
                        break
                    waiting.remove(task)
                    up = None
                    if task.needs is not None:
                        up = results[task.needs] if task.needs in results else upstream(task.needs)
                    running[pool.submit(task.fn, **task.kwargs, upstream=up)] = task
                    console.print(f"started {task.label}")
                    prog.update(bar, description=f"running: {', '.join(t.label for t in running.values())}"[:200])
                if not running:
                    raise CxraugError(f"{len(waiting)} units wait for generator units that are not in the plan")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = running.pop(fut)
                    result = fut.result()
                    if task.key in consumers:
                        results[task.key] = result
                    on_result(task, result)
                    done += 1
                    _announce(done, len(tasks), task, result)
                    prog.advance(bar)


def _init_worker() -> None:
    """A worker process draws no progress bars of its own (the driver shows which units run) and, on Linux, is
    killed with the driver, so that a killed study leaves no orphan writing into a unit's folder."""
    os.environ["CXRAUG_PROGRESS"] = "0"
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _call(fn: Callable[..., dict[str, Any]], names: list[str], upstream: Any, *values: Any) -> dict[str, Any]:
    """Ray worker entry: arguments arrive positionally so that Ray resolves every object reference."""
    return fn(**dict(zip(names, values)), upstream=upstream)


class RayExecutor:
    """Runs units as Ray tasks on a local or remote cluster (``address``: None = start a local Ray)."""

    name = "ray"

    def __init__(self, address: str | None = None, retries: int = 2, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise CxraugError("--executor ray needs Ray: pip install 'cxraug[ray]'") from None
        self.ray = ray
        self.retries = retries
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, configure_logging=False, log_to_driver=False)

    def run(self, tasks: list[Task], upstream: Callable[[str], dict[str, Any]], on_result: OnResult) -> None:
        ray = self.ray
        remote = ray.remote(_call)
        puts: dict[int, Any] = {}
        refs: dict[str, Any] = {}

        def shared(obj: Any) -> Any:
            """Put a big input into the object store once, however many tasks use it."""
            if id(obj) not in puts:
                puts[id(obj)] = (ray.put(obj), obj)
            return puts[id(obj)][0]

        pending: dict[Any, Task] = {}
        for task in tasks:
            names = list(task.kwargs)
            values = [shared(v) if _is_bulky(v) else v for v in task.kwargs.values()]
            if task.needs is None:
                up = None
            elif task.needs in refs:
                up = refs[task.needs]
            else:
                up = shared(upstream(task.needs))
            ref = remote.options(num_cpus=task.cpus, num_gpus=task.gpus, max_retries=self.retries,
                                 name=task.label[:120]).remote(task.fn, names, up, *values)
            refs[task.key] = ref
            pending[ref] = task
        done = 0
        with make_progress() as prog:
            bar = prog.add_task("study units (ray)", total=len(tasks))
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                result = ray.get(ready[0])
                done += 1
                on_result(task, result)
                _announce(done, len(tasks), task, result)
                prog.advance(bar)


def _is_bulky(value: Any) -> bool:
    """Image sets, feature extractors and the like go through the object store; settings travel inline."""
    return not isinstance(value, (str, int, float, bool, type(None), dict, list))
