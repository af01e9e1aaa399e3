"""The Ray executor: same numbers as the local executor, and a worker killed mid-unit is survived."""

from __future__ import annotations

import glob
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from study_tiny import results_without_timing, tiny_protocol, write_protocol

from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study

ray = pytest.importorskip("ray")


def _ray_pids(title_part: str) -> list[int]:
    """Processes whose title Ray set to ``ray::<task name>`` containing ``title_part``."""
    pids = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            cmd = Path(path).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::") and title_part in cmd:
            pids.append(int(path.split("/")[2]))
    return pids


def _kill_generator_worker_mid_unit(out: Path, killed: list[int], stop: threading.Event) -> None:
    """Wait until a generator has written training losses, then SIGKILL the Ray worker running it."""
    while not stop.is_set() and not killed:
        if list(out.glob("units/*/*/losses.csv")):
            for pid in _ray_pids("ray::generator"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.2)


def _start_local_ray(attempts: int = 3) -> None:
    """A local Ray with 2 CPUs; Ray gives its raylet a fixed 30 s to register, so retry on a loaded machine."""
    for attempt in range(attempts):
        try:
            ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
            return
        except Exception:  # noqa: BLE001 - "node timed out during startup" is a plain Exception
            ray.shutdown()
            if attempt == attempts - 1:
                raise


@pytest.mark.slow
def test_ray_equals_local_and_survives_a_killed_worker(tmp_path: Path) -> None:
    raw = tiny_protocol(tmp_path / "cache", execution={"threads": 1, "device": "cpu", "retries": 3})
    raw["generators"]["dcgan"]["config"]["steps"] = 60
    proto = load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    run_study(proto, tmp_path / "local")
    _start_local_ray()
    try:
        killed: list[int] = []
        stop = threading.Event()
        killer = threading.Thread(target=_kill_generator_worker_mid_unit, args=(tmp_path / "ray", killed, stop))
        killer.start()
        try:
            run_study(proto, tmp_path / "ray", executor="ray")
        finally:
            stop.set()
            killer.join()
    finally:
        ray.shutdown()
    assert killed, "no generator worker was caught mid-unit"
    assert results_without_timing(tmp_path / "ray") == results_without_timing(tmp_path / "local")
