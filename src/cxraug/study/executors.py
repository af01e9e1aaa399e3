"""Executors run units and hand each result back to the driver, which alone writes the output directory.

* :class:`LocalExecutor` - in this process, one unit after another.
* :class:`RayExecutor` - each unit a Ray task with its CPU/GPU needs (``pip install cxraug[ray]``); a unit
  whose worker dies is re-run (``execution.retries``); workers need not share the driver's filesystem for
  results (only a generator's in-progress checkpoints live in its work folder).

A unit function takes its inputs as arguments (images travel with the task) and returns a dict; the
result of a generator unit is handed to the classifier units that need it as ``upstream``.
"""

from __future__ import annotations

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


def _announce(done: int, total: int, task: Task, result: dict[str, Any]) -> None:
    console.print(f"[{done}/{total}] finished {task.label} ({result.get('wall_s', 0.0):.1f} s)")


class LocalExecutor:
    """Runs units sequentially in this process (tasks arrive ordered: generators before their consumers)."""

    name = "local"

    def run(self, tasks: list[Task], upstream: Callable[[str], dict[str, Any]], on_result: OnResult) -> None:
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
