"""`--workers N`: units in parallel worker processes give exactly the numbers of one worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_tiny import results_without_timing, tiny_protocol, write_protocol

from cxraug.errors import CxraugError
from cxraug.study.executors import LocalExecutor, Task, default_workers
from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study


def test_two_workers_give_the_results_of_one(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    raw = tiny_protocol(cache, training={"add_baselines": False})  # 1 generator + 4 classifier units
    proto = load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    run_study(proto, tmp_path / "one", workers=1)
    run_study(proto, tmp_path / "two", workers=2)
    one, two = results_without_timing(tmp_path / "one"), results_without_timing(tmp_path / "two")
    assert len(one) >= 5 and one == two
    assert (tmp_path / "one" / "summary.csv").read_text() == (tmp_path / "two" / "summary.csv").read_text()


def _double(x: int, upstream=None) -> dict:
    return {"value": 2 * x + (upstream["value"] if upstream else 0), "wall_s": 0.0}


def test_consumers_wait_for_their_generator_and_the_longest_ready_unit_starts_first() -> None:
    tasks = [Task("c1", "c1", _double, {"x": 1}, needs="g", cost_s=9), Task("g", "g", _double, {"x": 10}, cost_s=1),
             Task("a", "a", _double, {"x": 3}, cost_s=5), Task("b", "b", _double, {"x": 4}, cost_s=7)]
    order: list[str] = []
    got: dict[str, int] = {}

    def on_result(task, result):
        order.append(task.key)
        got[task.key] = result["value"]

    LocalExecutor(workers=2).run(tasks, lambda key: {"value": 0}, on_result)
    assert got == {"g": 20, "c1": 22, "a": 6, "b": 8}  # c1 received g's result
    assert order.index("g") < order.index("c1")


def test_worker_count_defaults_to_cores_over_threads() -> None:
    assert default_workers(2, cpus=2) == 1 and default_workers(1, cpus=2) == 2 and default_workers(4, cpus=2) == 1
    with pytest.raises(CxraugError, match="--workers must be >= 1"):
        LocalExecutor(workers=0)
