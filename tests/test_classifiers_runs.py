"""Run records of train-classifier (run.json before training, the stamp in metrics.json), --config FILE.yaml,
and TensorBoard event files of classifier and generator runs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cxraug.cli import app
from cxraug.data.imageset import ImageSet
from cxraug.data.phantom import write_phantom_dataset
from cxraug.errors import CxraugError


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> str:
    return str(write_phantom_dataset(tmp_path_factory.mktemp("ph") / "data", 12, size=32, seed=0,
                                     classes=["COVID", "Normal"]))


def test_config_file_run_record_and_stamp(phantoms, tmp_path, monkeypatch) -> None:
    import cxraug.classifiers.train as train_mod

    seen: list[dict] = []
    real = train_mod.train_classifier

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - run.json must exist before training starts
        seen.append(json.loads((tmp_path / "run" / "run.json").read_text()))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_classifier", spy)
    cfg = tmp_path / "clf.yaml"
    cfg.write_text(yaml.safe_dump({"data": phantoms, "model": "custom-cnn", "size": 16, "epochs": 3,
                                   "max_steps": 4, "weight_decay": 0.01, "gamma": 0.5, "early_stopping": False,
                                   "device": "cpu", "val_frac": 0.25, "test_frac": 0.25}))
    res = CliRunner().invoke(app, ["train-classifier", "--config", str(cfg), "--max-steps", "2", "--out",
                                   str(tmp_path / "run"), "--no-tensorboard"])
    assert res.exit_code == 0, res.output
    assert seen[0]["status"] == "running" and seen[0]["config"]["max_steps"] == 2  # the command line wins
    assert seen[0]["stamp"]["data_fingerprint"] and seen[0]["stamp"]["command"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["status"] == "finished" and run["accuracy"] == metrics["accuracy"] and run["steps"] == 2
    assert metrics["stamp"] == run["stamp"] == seen[0]["stamp"]
    c = metrics["config"]
    assert (c["model"], c["size"], c["weight_decay"], c["gamma"], c["early_stopping"]) == ("custom-cnn", 16, 0.01,
                                                                                           0.5, False)
    assert not (tmp_path / "run" / "tb").exists()
    cfg.write_text(yaml.safe_dump({"model": "custom-cnn", "no_such_field": 1}))
    res = CliRunner().invoke(app, ["train-classifier", "--config", str(cfg), "--out", str(tmp_path / "r2")])
    assert res.exit_code != 0 and "--config field no_such_field: Extra inputs" in str(res.exception)


def _events(folder) -> list:  # noqa: ANN001
    return sorted(folder.glob("events.out.tfevents.*"))


def test_tensorboard_events_for_classifiers_and_generators(phantoms, tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="TensorBoard is an extra: pip install 'cxraug[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = CliRunner().invoke(app, ["train-classifier", "--data", phantoms, "--model", "custom-cnn", "--size", "16",
                                   "--max-steps", "4", "--eval-every", "2", "--device", "cpu", "--out",
                                   str(tmp_path / "clf")])
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(tmp_path / "clf" / "tb")).Reload()
    assert [e.step for e in acc.Scalars("train/val_loss")] == [2, 4]
    res = CliRunner().invoke(app, ["train-generator", "--data", phantoms, "--class", "COVID", "--model", "dcgan",
                                   "--size", "16", "--steps", "4", "--checkpoint-every", "2", "--sample-every", "2",
                                   "--set", "g_channels=4", "--set", "d_channels=4", "--set", "latent_dim=4",
                                   "--set", "kid_samples=10", "--batch-size", "4", "--out", str(tmp_path / "gen")])
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(tmp_path / "gen" / "tb")).Reload()
    assert {"loss/loss_d", "loss/loss_g", "checkpoint/kid"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("checkpoint/kid")] == [2, 4]
    assert [e.step for e in acc.Images("samples")] == [2, 4]


def test_without_tensorboard_a_note_or_an_error_says_what_to_install(tmp_path, monkeypatch, capsys) -> None:
    import cxraug.tensorboard as tbmod
    from cxraug.classifiers.train import ClassifierConfig, train_classifier

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails as if not installed
    monkeypatch.setattr(tbmod, "_noted", False)
    data = ImageSet(np.random.default_rng(0).integers(0, 255, (8, 16, 16), dtype=np.uint8),
                    np.arange(8) % 2, ["a", "b"])
    cfg = ClassifierConfig(model="custom-cnn", max_steps=1, precision="32")
    train_classifier(data, data, cfg, out_dir=tmp_path, device="cpu", tensorboard=None)
    assert "pip install 'cxraug[tensorboard]'" in capsys.readouterr().err
    with pytest.raises(CxraugError, match=r"pip install 'cxraug\[tensorboard\]'"):
        train_classifier(data, data, cfg, out_dir=tmp_path, device="cpu", tensorboard=True)
