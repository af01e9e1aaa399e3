"""Studies that survive faults (issue 21): SIGKILL at seeded moments, damaged files, a full disk, two studies on one
folder, non-finite losses, bad input files and mutated protocols. ``bench/faults.py`` runs the same harness with
K >= 20 kills. Every fault is named by the moment it hit; ``CXRAUG_FAULT_SEED`` / ``CXRAUG_FAULT_KILLS`` change
the seed and the number of kills."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fault_harness import (concurrent_trial, damage, enospc_trial, fingerprint, kill_moments, kill_trial,
                           make_study, mutation_outcome, mutation_setup, mutation_strategy, problems,
                           reference)
from study_tiny import tiny_protocol, write_protocol

from cxraug import faults
from cxraug.errors import CxraugError, DiskFullError
from cxraug.study.lock import OutputLock
from cxraug.study.protocol import load_protocol
from cxraug.study.runner import run_study

SEED = int(os.environ.get("CXRAUG_FAULT_SEED", "0"))
KILLS = int(os.environ.get("CXRAUG_FAULT_KILLS", "3"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fault study, its data cache warmed, and its uninterrupted reference run (fingerprint, event counts)."""
    root = tmp_path_factory.mktemp("faults")
    study = make_study(root, root / "cache")
    run_study(load_protocol(study.proto), root / "warm", dry_run=True)  # every later run then passes the same events
    expected, counts = reference(study, root / "reference")  # in this process; the faulted runs are `cxraug study`
    return {"root": root, "study": study, "expected": expected, "counts": counts}


def _in_process(base: dict[str, Any], out: Path) -> None:
    run_study(load_protocol(base["study"].proto), out)


def after_a_unit(counts: dict[str, int], seed: int) -> str:
    """A seeded kill among the unit-result writes from the 3rd on: the first unit (2 writes: its pool or history,
    then result.json) has finished by then, so the resumed run must reuse it."""
    return f"kill@result:{random.Random(f'{seed}/after-a-unit').randint(3, counts['result'])}"


@pytest.mark.slow
def test_killed_at_seeded_moments_resumes_identical(base: dict[str, Any]) -> None:
    moments = kill_moments(base["counts"], KILLS, SEED) + [after_a_unit(base["counts"], SEED)]
    failed, records = [], []
    for i, fault in enumerate(moments):
        rec = kill_trial(base["study"], base["root"] / f"kill{i}", fault, base["expected"])
        records.append(rec)
        if not rec["survived"]:
            failed.append(f"CXRAUG_FAULT={fault} (seed {SEED}, trial {i}): {rec}")
    assert not failed, "\n".join(failed)
    # at least one kill came after a finished unit, and the resumed run reused exactly what had finished
    assert records[-1]["killed"] and records[-1]["units_done_at_kill"] >= 1, records[-1]
    assert records[-1]["reused"] == records[-1]["units_done_at_kill"]


def test_kill_moments_are_seeded_and_spread_over_every_phase(base: dict[str, Any]) -> None:
    counts = base["counts"]
    assert set(counts) == {"data", "generator", "checkpoint", "classifier", "result", "output", "report"}
    moments = kill_moments(counts, 21, SEED)
    assert moments == kill_moments(counts, 21, SEED) != kill_moments(counts, 21, SEED + 1)
    late = after_a_unit(counts, SEED)
    assert late == after_a_unit(counts, SEED) and 3 <= int(late.rsplit(":", 1)[1]) <= counts["result"]
    hit = [m.split("@")[1].split(":") for m in moments]
    assert {p for p, _ in hit} == set(counts)
    assert all(1 <= int(n) <= counts[p] for p, n in hit)


def test_damaged_unit_files_are_named_moved_aside_and_rerun(base: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = base["root"] / "damaged"
    shutil.copytree(base["root"] / "reference", out)
    rng = random.Random(SEED)
    planted = {}
    for pattern, how in (("units/*/pool.npz", "bitflip"), ("units/*/history.csv", "truncate"),
                         ("units/*/result.json", "empty")):
        path = next(p for p in sorted(out.glob(pattern)) if not any(d.startswith(str(p.parent.relative_to(out)))
                                                                   for d in planted))  # one file per unit
        planted[str(path.relative_to(out))] = damage(path, how, rng)
    capsys.readouterr()
    _in_process(base, out)
    log = " ".join(capsys.readouterr().err.split())
    moved = {q["path"] for q in json.loads((out / "study.json").read_text())["integrity"]["quarantined"]}
    for rel, what in planted.items():
        assert f"{rel} is damaged" in log, (rel, what)
        assert rel in moved and (out / "quarantine" / rel).is_file(), (rel, what)
    assert fingerprint(out) == base["expected"], planted
    assert not problems(out)


def test_damaged_generator_checkpoints_of_an_unfinished_unit_are_retrained(base: dict[str, Any]) -> None:
    """A study killed after its generator's checkpoints were written (its result not yet): a damaged last.pt and
    a truncated kept checkpoint are moved aside and the models train again to the same pool."""
    out = base["root"] / "damaged-ckpt"
    shutil.copytree(base["root"] / "reference", out)
    (gen,) = [p.parent for p in out.glob("units/*/pool.npz")]
    (gen / "result.json").unlink()
    (gen / "pool.npz").unlink()
    rng = random.Random(SEED)
    damage(gen / "COVID" / "checkpoints" / "last.pt", "bitflip", rng)
    damage(gen / "Normal" / "checkpoints" / "step_0000004.pt", "truncate", rng)
    _in_process(base, out)
    moved = {q["path"] for q in json.loads((out / "study.json").read_text())["integrity"]["quarantined"]}
    rel = str(gen.relative_to(out))
    assert {f"{rel}/COVID/checkpoints/last.pt", f"{rel}/Normal/checkpoints/step_0000004.pt",
            f"{rel}/Normal/checkpoints/last.pt"} == moved
    assert fingerprint(out) == base["expected"]


@pytest.mark.parametrize("fault", ["enospc@checkpoint:3", "enospc@result:2"])
def test_disk_full_stops_cleanly_and_rerun_is_identical(base: dict[str, Any], fault: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = base["root"] / f"full-{fault.split('@')[1].replace(':', '-')}"
    monkeypatch.setattr(faults, "_SPEC", fault)
    monkeypatch.setattr(faults, "_counts", {})
    with pytest.raises(DiskFullError) as exc:
        _in_process(base, out)
    msg = str(exc.value)
    assert msg.startswith(f"disk full writing {out}") and "untouched" in msg and "run the same command again" in msg
    assert not problems(out) and not (out / ".lock").exists(), fault
    monkeypatch.setattr(faults, "_SPEC", "")
    _in_process(base, out)
    assert fingerprint(out) == base["expected"], fault


@pytest.mark.slow
def test_disk_full_in_the_kernel_gives_one_message_and_exit_2(base: dict[str, Any]) -> None:
    """A real failing write: a file-size limit below a checkpoint's size makes the kernel refuse it (EFBIG)."""
    rec = enospc_trial(base["study"], base["root"] / "fsize", base["expected"], limit_bytes=64 * 1024)
    assert rec["clean_stop"] and rec["identical"], rec
    assert "last.pt" in rec["message"] or "step_" in rec["message"], rec


@pytest.mark.slow
def test_two_studies_on_one_folder(base: dict[str, Any]) -> None:
    rec = concurrent_trial(base["study"], base["root"] / "twice", base["expected"])
    assert rec["refused"] and rec["identical"], rec


def test_held_lock_refuses_at_once_naming_pid_and_host(tmp_path: Path, base: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from cxraug import cli

    out = tmp_path / "out"
    with OutputLock(out):
        monkeypatch.setattr(sys, "argv", ["cxraug", "study", str(base["study"].proto), "--out", str(out),
                                          "--workers", "1"])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        assert exc.value.code == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"PID {os.getpid()} on host {socket.gethostname()}" in err and "in use by another cxraug study" in err
        assert err.count("error:") == 1 and "Traceback" not in err
        assert (out / ".lock").exists()
    assert not out.exists()  # released; the folder it created held nothing else


def _write_lock(out: Path, **owner: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "started": "then", "command": "x",
                                           **owner}))


def test_stale_lock_is_taken_over_and_foreign_host_refused(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path / "a", pid=dead.pid)
    with OutputLock(tmp_path / "a") as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == dead.pid
        assert json.loads((tmp_path / "a" / ".lock").read_text())["pid"] == os.getpid()
    # a PID that runs again, but a process started at another moment: stale as well
    _write_lock(tmp_path / "b", pid=os.getpid(), ticks="1")
    with OutputLock(tmp_path / "b") as lock:
        assert lock.took_over is not None
    _write_lock(tmp_path / "c", pid=dead.pid, host="elsewhere")
    with pytest.raises(CxraugError, match=f"PID {dead.pid} on host elsewhere"):
        OutputLock(tmp_path / "c").__enter__()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".lock").write_text("garbage")
    with pytest.raises(CxraugError, match="is not a cxraug lock"):
        OutputLock(tmp_path / "d").__enter__()


# ----------------------------------------------------------------------------- non-finite losses
def test_classifier_non_finite_loss_restores_best_check(tmp_path: Path) -> None:
    from cxraug.classifiers import ClassifierConfig
    from cxraug.classifiers.train import WeightedCE, train_classifier
    from cxraug.data.imageset import ImageSet

    rng = np.random.default_rng(0)
    data = ImageSet(rng.integers(0, 255, (32, 32, 32), dtype=np.uint8), np.arange(32) % 2, ["A", "B"])
    calls = {"n": 0}
    real_sum = WeightedCE.sum

    def poisoned(self: WeightedCE, logits: Any, y: Any, synthetic: Any = None) -> Any:
        calls["n"] += logits.requires_grad  # training steps only (validation runs without gradients)
        out = real_sum(self, logits, y, synthetic)
        return out * float("nan") if calls["n"] > 8 else out  # 2 checks of 4 steps fine, then nan

    cfg = ClassifierConfig(model="custom-cnn", batch_size=8, max_steps=40, eval_every=4, early_stopping=False)
    WeightedCE.sum = poisoned
    try:
        trained = train_classifier(data, data, cfg, out_dir=tmp_path, device="cpu")
    finally:
        WeightedCE.sum = real_sum
    assert trained.failure is not None and "non-finite loss by step 12" in trained.failure
    assert trained.best_check in (1, 2) and trained.steps == 12 and trained.converged is None
    assert all(np.isfinite(v.numpy()).all() for v in trained.model.state_dict().values())
    assert (tmp_path / "best.pt").is_file()


def test_non_finite_losses_fail_their_units_and_the_study_continues(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A classifier repeat whose loss explodes (learning rate 1e30) and a generator whose loss becomes nan: both
    units are marked failed, the arms' lost repeats are named, every other unit runs, and a re-run is identical."""
    import cxraug.classifiers as clf
    import cxraug.study.units
    from cxraug.generators.dcgan import DCGAN

    real_train, real_step = clf.train_classifier, DCGAN.train_step

    def explode(train: Any, val: Any, cfg: Any, **kw: Any) -> Any:
        return real_train(train, val, cfg.model_copy(update={"lr": 1e30}) if cfg.seed == 1 else cfg, **kw)

    def nan_step(self: DCGAN, batch: Any) -> dict[str, float]:
        losses = real_step(self, batch)
        return {**losses, "g": float("nan")} if self.step == 5 and self.classes == ["Normal"] else losses

    monkeypatch.setattr(cxraug.study.units, "train_classifier", explode)
    monkeypatch.setattr(DCGAN, "train_step", nan_step)
    raw = tiny_protocol(tmp_path / "cache", training={"add_baselines": False})
    proto = load_protocol(write_protocol(tmp_path / "p.yaml", raw))
    run_study(proto, tmp_path / "out")
    rows = []
    for name in ("results.csv", "generators.csv"):  # classifier units, generator units
        with open(tmp_path / "out" / name, newline="") as f:
            rows += list(csv.DictReader(f))
    status = {(r["kind"], r.get("arm", ""), r.get("clf_seed", "")): r["status"] for r in rows}
    assert status[("classifier", "none", "0")] == "ok"
    assert status[("classifier", "none", "1")] == "failed: non-finite loss"
    assert status[("classifier", "dcgan", "0")] == status[("classifier", "dcgan", "1")] == \
        "failed: non-finite loss (generator)"
    assert status[("generator", "", "")] == "failed: non-finite loss"
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        f1 = {r["arm"]: r for r in csv.DictReader(f) if r["metric"] == "f1"}
    assert (f1["none"]["n"], f1["none"]["lost_repeats"]) == ("1", "1")
    assert (f1["dcgan"]["n"], f1["dcgan"]["lost_repeats"], f1["dcgan"]["mean"]) == ("0", "2", "")
    study = json.loads((tmp_path / "out" / "study.json").read_text())
    assert any(line.startswith("arm none (n12, cnn) lost 1 of 2 repeats") for line in study["failures"])
    assert any(line.startswith("arm dcgan (n12, cnn) lost 2 of 2 repeats") for line in study["failures"])
    assert any("non-finite loss g=nan at step 6" in line for line in study["failures"])
    assert "lost 1 of 2 repeats" in (tmp_path / "out" / "report.html").read_text()
    first = fingerprint(tmp_path / "out")
    run_study(proto, tmp_path / "out")  # failed units are stored: nothing runs again, nothing changes
    assert fingerprint(tmp_path / "out") == first


# ----------------------------------------------------------------------------- bad input
def test_bad_files_in_a_study_are_skipped_and_listed(tmp_path: Path) -> None:
    from PIL import Image

    from cxraug.data.phantom import write_phantom_dataset

    root = write_phantom_dataset(tmp_path / "data", {"COVID": 40, "Normal": 40}, size=48, seed=3)
    good = next((root / "COVID" / "images").glob("*.png")).read_bytes()
    bad = {"COVID/images/zero.png": b"", "COVID/images/truncated.png": good[: len(good) // 3],
           "Normal/images/garbage.png": os.urandom(500), "Normal/images/text.jpg": b"not a jpeg at all"}
    for rel, content in bad.items():
        (root / rel).write_bytes(content)
    odd = np.random.default_rng(0).integers(0, 65535, (48, 48)).astype(np.uint16)
    Image.fromarray(odd).save(root / "COVID" / "images" / "sixteen-bit.png")  # odd modes decode, not skipped
    Image.fromarray(np.zeros((48, 48, 4), np.uint8), "RGBA").save(root / "Normal" / "images" / "rgba.png")
    Image.fromarray(np.zeros((48, 48), np.uint8)).convert("P").save(root / "Normal" / "images" / "palette.png")
    raw = tiny_protocol(tmp_path / "cache", arms=[{"name": "none"}], generators={},
                        regimes=[{"name": "n8", "n_per_class": 8}], repeats={"classifier_seeds": 1},
                        classifiers=[{"name": "cnn", "model": "custom-cnn", "config": {"epochs": 1, "batch_size": 8}}])
    out = tmp_path / "out"
    run_study(load_protocol(write_protocol(tmp_path / "p.yaml", raw)), out, data_root=str(root))
    with open(out / "skipped.csv", newline="") as f:
        skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(skipped) == {Path(rel).name for rel in bad}, skipped
    report = (out / "report.html").read_text()
    assert all(str(root / rel) in report for rel in bad)
    assert json.loads((out / "study.json").read_text())["skipped"] == len(bad)
    assert not any(n in skipped for n in ("sixteen-bit.png", "rgba.png", "palette.png"))


def test_mutated_protocols_plan_or_stop_with_exit_2_naming_the_field(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings

    data, base_raw = mutation_setup(tmp_path)
    outcomes: list[str] = []

    @settings(max_examples=int(os.environ.get("CXRAUG_MUTATIONS", "60")), deadline=None, database=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(mutation_strategy(base_raw))
    def check(case: tuple[str, dict[str, Any]]) -> None:
        outcome = mutation_outcome(*case, tmp_path, data)
        outcomes.append(outcome)
        assert outcome in ("planned", "refused"), outcome

    check()
    assert len(outcomes) >= 30 and {"planned", "refused"} <= set(outcomes)


def test_every_truncation_and_bit_flip_of_a_checkpoint_or_result_is_detected(tmp_path: Path) -> None:
    """Damage of any length or at any byte (the checksum footer and field included) raises CorruptFileError: never
    another exception, never a load."""
    import torch

    from cxraug import io
    from cxraug.errors import CorruptFileError

    io.torch_save({"w": torch.randn(20, 20), "step": 3, "best": {"kid": None}}, tmp_path / "c.pt")
    io.write_checked_json(tmp_path / "r.json", {"metrics": {"f1": 0.5}, "y_pred": [0, 1, 1], "name": "é"})
    rng = random.Random(SEED)
    for name, load in (("c.pt", lambda p: io.torch_load(p, checksum=True)), ("r.json", io.read_checked_json)):
        data = (tmp_path / name).read_bytes()
        cuts = [*range(0, 40), *range(len(data) - 100, len(data)), *rng.sample(range(len(data)), 50)]
        flips = [(i, bit) for i in rng.sample(range(len(data)), 150) for bit in (rng.randrange(8),)]
        variants = [data[:n] for n in cuts] + [bytes(b ^ (1 << bit) if j == i else b for j, b in enumerate(data))
                                               for i, bit in flips]
        for damaged in variants:
            (tmp_path / "bad").write_bytes(damaged)
            with pytest.raises(CorruptFileError):
                load(tmp_path / "bad")
    for head in (b"", (tmp_path / "c.pt").read_bytes()[:3]):  # no footer to check: torch.load itself fails
        (tmp_path / "bad").write_bytes(head)
        with pytest.raises(CorruptFileError):
            io.torch_load(tmp_path / "bad")
    assert io.torch_load(tmp_path / "c.pt", checksum=True)["step"] == 3  # the undamaged files load
    assert io.read_checked_json(tmp_path / "r.json")["name"] == "é"


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    """Outputs written through a temporary file are readable by whoever a plain ``open`` would let read them
    (``mkstemp`` alone leaves 0600, so a report could not be shared), under the process umask."""
    import os
    import stat

    from cxraug import io

    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "report.html", "<html></html>")
        (tmp_path / "plain.txt").write_text("x")
        os.umask(0o077)
        io.write_text(tmp_path / "private.csv", "a\n")
    finally:
        os.umask(old)
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert mode["report.html"] == mode["plain.txt"] == 0o644 and mode["private.csv"] == 0o600
