"""Run records of generator training: run.json before training, append-only logs, model card, --config,
score-checkpoints reproducing the training-time KID, diffusion sampling options on generate."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

import cxraug.generators.runlog as runlog
from cxraug.cli import app
from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import write_phantom_dataset
from cxraug.generators.base import Batch, Generator, GeneratorKind, read_scores

TINY = ["--set", "g_channels=4", "--set", "d_channels=4", "--set", "latent_dim=4", "--batch-size", "4"]
STAMP_KEYS = {"cxraug", "git_commit", "command", "torch", "cuda", "device", "device_name", "versions",
              "data_fingerprint", "started"}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> str:
    return str(write_phantom_dataset(tmp_path_factory.mktemp("ph") / "data", 10, size=32, seed=0,
                                     classes=["COVID", "Normal"]))


def test_killed_after_its_first_checkpoint_a_run_has_its_record(phantoms, tmp_path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "cxraug.cli", "train-generator", "--data", phantoms, "--class", "COVID",
           "--model", "dcgan", "--size", "16", "--steps", "100000", "--checkpoint-every", "3", "--scorer", "none",
           "--out", str(run), *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "CXRAUG_PROGRESS": "0"})
    try:
        deadline = time.time() + 240
        while not (run / "checkpoints" / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "running" and info["class"] == "COVID" and info["total_steps"] == 100000
    assert info["config"]["steps"] == 100000 and info["config"]["g_channels"] == 4  # the resolved config
    assert info["config"]["checkpoint_every"] == 3 and info["config"]["beta1"] == 0.5  # a model default
    assert STAMP_KEYS <= set(info["stamp"]) and "train-generator" in info["stamp"]["command"]
    assert info["stamp"]["device"] == "cpu" and info["stamp"]["data_fingerprint"]
    assert Generator.load(run).stamp == info["stamp"]  # the same stamp in the checkpoint


class Tiny(Generator):
    """One weight; a cheap step, so that a 2,000-step run takes a second or two."""

    name = "tiny-test"
    kind = GeneratorKind.UNCONDITIONAL
    checkpointed = ("w", "opt")

    def build(self) -> None:
        self.w = nn.Linear(1, 1)
        self.opt = torch.optim.SGD(self.w.parameters(), lr=0.01)

    def train_step(self, batch: Batch) -> dict[str, float]:
        loss = (self.w(batch.x.mean((1, 2, 3))[:, None]) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), **({"extra": 1.0} if self.step == 700 else {})}  # a late, rare key

    def _generate(self, n: int, labels, source, rng: torch.Generator) -> torch.Tensor:
        return torch.rand(n, 1, 16, 16, generator=rng, device=self.device) * 2 - 1


def test_the_loss_log_of_a_2000_step_run_is_written_once_line_by_line(tmp_path, monkeypatch) -> None:
    written: dict[str, int] = {}
    modes: list[str] = []
    real_open = open

    class Counting:
        def __init__(self, f, name: str) -> None:
            self.f, self.name = f, name

        def write(self, text: str) -> int:
            written[self.name] = written.get(self.name, 0) + len(text)
            return self.f.write(text)

        def __getattr__(self, attr: str):  # noqa: ANN204
            return getattr(self.f, attr)

        def __enter__(self) -> "Counting":
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    def counting_open(path, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        f = real_open(path, mode, *args, **kwargs)
        name = Path(path).name
        if "losses.csv" in name and ("w" in mode or "a" in mode):  # the log or a temporary rewrite of it
            modes.append(mode)
            return Counting(f, "losses.csv")
        return f

    monkeypatch.setattr(runlog, "open", counting_open, raising=False)  # the run log writes losses.csv
    data = ImageSet(np.zeros((8, 16, 16), np.uint8), np.zeros(8, dtype=np.int64), ["a"])
    gen = Tiny({"size": 16, "steps": 2000, "batch_size": 4, "log_every": 1, "sample_every": 1000,
                "checkpoint_every": 1000})
    gen.fit(data, tmp_path, progress=False, tensorboard=False)
    text = (tmp_path / "losses.csv").read_text()
    assert len(text.splitlines()) == 2001 and text.splitlines()[0] == "step,loss,extra"
    # every line reaches the file once: 2,000 appends, one rewrite when "extra" widened the header
    assert modes.count("a") == 2000
    assert written["losses.csv"] < 1.5 * len(text)  # a rewrite per log step would write ~1,000x the file


def test_score_checkpoints_gives_the_kid_recorded_during_training(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CXRAUG_CACHE", str(tmp_path / "cache"))
    phantoms = str(write_phantom_dataset(tmp_path / "data", 30, size=32, seed=0, classes=["COVID", "Normal"]))
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train-generator", "--data", phantoms, "--class", "COVID", "--model", "dcgan",
                                   "--size", "16", "--steps", "6", "--checkpoint-every", "2", "--keep-steps",
                                   "2,4,6", "--set", "kid_samples=12", "--out", str(run), *TINY])
    assert res.exit_code == 0, res.output
    recorded = {r["step"]: r["results"]["kid"] for r in read_scores(run)}
    assert sorted(recorded) == [2, 4, 6]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["best_kid"] == min(recorded.values())

    res = CliRunner().invoke(app, ["score-checkpoints", str(run), "--all", "--metrics", "kid,fid,prdc"])
    assert res.exit_code == 0, res.output
    with open(run / "checkpoint_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["checkpoint"] for r in rows} == {"best.pt", "last.pt", "step_0000002.pt", "step_0000004.pt",
                                               "step_0000006.pt"}
    for r in rows:
        assert float(r["kid"]) == pytest.approx(recorded[int(r["step"])], rel=1e-9, abs=1e-12), r
        assert r["against"] == "train" and r["fid"] and r["coverage"]
    res = CliRunner().invoke(app, ["score-checkpoints", str(run), "--against", "val", "--out", str(tmp_path / "v.csv")])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "v.csv", newline="") as f:
        val_rows = list(csv.DictReader(f))
    assert [r["checkpoint"] for r in val_rows] == ["best.pt", "last.pt"] and val_rows[0]["against"] == "val"
    assert float(val_rows[0]["kid"]) != pytest.approx(float(next(r for r in rows if r["checkpoint"] == "best.pt")["kid"]))

    card = (run / "MODEL_CARD.md").read_text()
    assert info["stamp"]["data_fingerprint"] in card and f"by class: COVID {info['n_train']} (" in card
    assert "Not for diagnosis" in card and "| COVID |" in card and "memorised fraction" in card
    assert set(info["quality"]["COVID"]) >= {"kid", "floor_kid", "coverage", "memorised_fraction"}


def test_config_file_sets_options_and_fields_and_the_command_line_wins(phantoms, tmp_path) -> None:
    cfg = tmp_path / "dcgan.yaml"
    cfg.write_text(yaml.safe_dump({"model": "dcgan", "class": "covid", "data": phantoms, "size": 16, "steps": 5,
                                   "batch_size": 4, "g_channels": 4, "d_channels": 4, "latent_dim": 4,
                                   "ema_decay": 0.9, "scorer": "none"}))
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train-generator", "--config", str(cfg), "--steps", "2", "--ema", "0.5",
                                   "--set", "d_channels=8", "--out", str(run)])
    assert res.exit_code == 0, res.output
    info = json.loads((run / "run.json").read_text())
    assert info["class"] == "COVID" and info["config"]["steps"] == 2 and info["config"]["g_channels"] == 4
    assert info["config"]["ema_decay"] == 0.5 and info["config"]["d_channels"] == 8
    assert info["scorer"] is None and info["config"]["size"] == 16
    cfg.write_text(yaml.safe_dump({"model": "dcgan", "class": "covid", "size": 16, "bogus_field": 1}))
    res = CliRunner().invoke(app, ["train-generator", "--config", str(cfg), "--out", str(tmp_path / "r2")])
    assert res.exit_code != 0 and "bogus_field" in str(res.exception)


def test_generate_sets_diffusion_sampling_options(phantoms, tmp_path) -> None:
    run = tmp_path / "ddpm"
    res = CliRunner().invoke(app, ["train-generator", "--data", phantoms, "--model", "ddpm", "--size", "16",
                                   "--steps", "1", "--batch-size", "4", "--scorer", "none", "--set",
                                   "channels=[8,8]", "--set", "attention_levels=[false,false]", "--set",
                                   "norm_num_groups=4", "--set", "num_head_channels=4", "--out", str(run)])
    assert res.exit_code == 0, res.output
    png = tmp_path / "png"
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run), "--n", "2", "--guidance", "2.5",
                                   "--sample-steps", "3", "--label", "Normal", "--out", str(png)])
    assert res.exit_code == 0, res.output
    with open(png / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["guidance_scale"], r["sample_steps"]) for r in rows} == {("2.5", "3")}
    gen = Generator.load(run)
    gen.config.guidance_scale, gen.config.sample_steps = 2.5, 3
    from PIL import Image

    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(png / r["file"])) for r in rows]),
                                  gen.sample(2, label="Normal", seed=0))
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run), "--n", "2", "--sample-steps", "5000",
                                   "--out", str(png)])
    assert res.exit_code != 0 and "cannot exceed train_timesteps" in str(res.exception)
