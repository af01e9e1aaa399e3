"""``cxraug train-generator`` and ``cxraug generate`` end to end on a tiny phantom folder (CPU, seconds)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxraug.cli import app
from cxraug.data.phantom import write_phantom_dataset
from cxraug.generators import GENERATORS
from cxraug.generators.base import Generator

TINY = ["--set", "g_channels=4", "--set", "d_channels=4", "--set", "latent_dim=4", "--batch-size", "4"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> str:
    return str(write_phantom_dataset(tmp_path_factory.mktemp("ph") / "data", 10, size=32, seed=0,
                                     classes=["COVID", "Normal"]))


def test_help_lists_the_registry() -> None:
    out = CliRunner().invoke(app, ["train-generator", "--help"], env={"COLUMNS": "250"}).output
    for name in ("vae", "conv-vae", "dcgan", "wgan-gp", "vae-gan"):
        assert name in out
    assert all(n in out for n in GENERATORS.names())


def test_train_resume_and_generate(phantoms, tmp_path) -> None:
    run = tmp_path / "run"
    args = ["train-generator", "--data", phantoms, "--class", "covid", "--model", "dcgan", "--size", "16",
            "--out", str(run), "--scorer", "none", "--diffaugment", "translation,color", "--ema", "0.9", *TINY]
    res = CliRunner().invoke(app, [*args, "--steps", "2"])
    assert res.exit_code == 0, res.output
    info = json.loads((run / "run.json").read_text())
    assert info["class"] == "COVID" and info["steps"] == 2 and info["n_train"] == info["train_counts"]["COVID"]
    assert info["config"]["diffaugment"] == ["translation", "color"] and info["config"]["ema_decay"] == 0.9
    assert CliRunner().invoke(app, [*args, "--steps", "4"]).exit_code != 0  # refuses to overwrite a run
    res = CliRunner().invoke(app, [*args, "--steps", "4", "--resume", "--devices", "2"])  # resumed under DDP
    assert res.exit_code == 0, res.output
    assert Generator.load(run).step == 4 and json.loads((run / "run.json").read_text())["devices"] == 2

    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run), "--n", "5", "--out", str(tmp_path / "png"),
                                   "--seed", "3"])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "png" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["index"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert {r["label"] for r in rows} == {"COVID"} and {r["seed"] for r in rows} == {"3"}
    imgs = np.stack([np.asarray(Image.open(tmp_path / "png" / r["file"])) for r in rows])
    np.testing.assert_array_equal(imgs, Generator.load(run).sample(5, seed=3))


def test_conditional_model_samples_the_requested_label(phantoms, tmp_path) -> None:
    run = tmp_path / "acgan"
    res = CliRunner().invoke(app, ["train-generator", "--data", phantoms, "--model", "acgan", "--size", "16",
                                   "--steps", "2", "--batch-size", "4", "--set", "g_width=8", "--set", "d_width=4",
                                   "--scorer", "none", "--out", str(run)])
    assert res.exit_code == 0, res.output
    gen = Generator.load(run)
    assert gen.classes == ["COVID", "Normal"]
    for label, expect in (("normal", ["Normal"] * 4), (None, ["COVID", "Normal"] * 2)):
        png = tmp_path / f"png-{label}"
        res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run), "--n", "4", "--seed", "5",
                                       "--out", str(png), *(["--label", label] if label else [])])
        assert res.exit_code == 0, res.output
        with open(png / "manifest.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["label"] for r in rows] == expect
        imgs = np.stack([np.asarray(Image.open(png / r["file"])) for r in rows])
        idx = [gen.classes.index(c) for c in expect]
        np.testing.assert_array_equal(imgs, gen.sample(4, label=idx, seed=5))


def test_pix2pix_source_and_target_classes(phantoms, tmp_path) -> None:
    run = tmp_path / "p2p"
    args = ["train-generator", "--data", phantoms, "--model", "pix2pix", "--source", "covid", "--target", "Normal",
            "--size", "16", "--steps", "2", "--batch-size", "2", "--set", "g_width=4", "--set", "d_width=4",
            "--scorer", "none", "--out", str(run)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    gen = Generator.load(run)
    assert (gen.source_class, gen.target_class) == ("COVID", "Normal")  # the defaults are Normal -> COVID
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run), "--n", "3", "--source", phantoms,
                                   "--target", "normal", "--out", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "png" / "manifest.csv") as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["Normal"] * 3


def test_user_errors_are_one_line(phantoms, tmp_path) -> None:
    base = ["train-generator", "--data", phantoms, "--size", "16", "--out", str(tmp_path / "r"), "--scorer", "none"]
    for extra, msg in ((["--model", "dcgan"], "--class"),
                       (["--model", "dcgan", "--class", "COVID", "--set", "bogus=1"], "bogus"),
                       (["--model", "dcgan", "--class", "COVID", "--diffaugment", "warp"], "diffaugment"),
                       (["--model", "dcgan", "--class", "COVID", "--source", "Normal"], "translation models"),
                       (["--model", "pix2pix", "--source", "COVID", "--target", "covid"], "same class")):
        res = CliRunner().invoke(app, base + extra)
        assert res.exit_code != 0 and msg in str(res.exception), (extra, res.exception)
    for extra, msg in ((["--model", "nosuch", "--class", "COVID"], "'nosuch' is not one of 'acgan'"),
                       (["--model", "dcgan", "--class", "COVID", "--score-against", "test"], "'test' is not one of")):
        res = CliRunner().invoke(app, base + extra, env={"COLUMNS": "250"})  # refused by the option choices
        assert res.exit_code == 2 and msg in res.output, (extra, res.output)


def test_ddpm_edits_every_training_image(phantoms, tmp_path) -> None:
    from cxraug.data import PreprocessConfig, load_splits
    from cxraug.generators.ddpm import DDPM

    train = load_splits(phantoms, preprocess=PreprocessConfig(size=16)).train
    gen = DDPM({"size": 16, "channels": [8, 16], "attention_levels": [False, True], "num_head_channels": 8,
                "norm_num_groups": 4, "batch_size": 8, "steps": 2, "sample_steps": 3}, classes=train.classes)
    gen.fit(train, tmp_path / "run", progress=False)
    gen.save(tmp_path / "ddpm.pt")
    png = tmp_path / "edits"
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(tmp_path / "ddpm.pt"), "--edit", phantoms,
                                   "--strength", "0.4", "--per-image", "2", "--guidance", "1.5",
                                   "--sample-steps", "2", "--seed", "4", "--out", str(png)])
    assert res.exit_code == 0, res.output
    with open(png / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["source"] for r in rows] == list(np.repeat(train.paths, 2))  # training fold only, each twice
    assert [r["label"] for r in rows] == [train.classes[y] for y in np.repeat(train.labels, 2)]
    assert {r["strength"] for r in rows} == {"0.4"} and [int(r["index"]) for r in rows] == list(range(len(rows)))
    imgs = np.stack([np.asarray(Image.open(png / r["file"])) for r in rows])
    back = Generator.load(tmp_path / "ddpm.pt")
    expect = back.edit(np.repeat(train.images, 2, axis=0), np.repeat(train.labels, 2), 0.4, steps=2, guidance=1.5,
                       seed=4)
    np.testing.assert_array_equal(imgs, expect)
    towards = tmp_path / "towards"
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(tmp_path / "ddpm.pt"), "--edit", phantoms,
                                   "--label", "covid", "--out", str(towards)])
    assert res.exit_code == 0, res.output
    with open(towards / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    normal = [p for p, y in zip(train.paths, train.labels) if train.classes[y] == "Normal"]
    assert [r["source"] for r in rows] == normal and {r["label"] for r in rows} == {"COVID"}
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(tmp_path / "ddpm.pt"), "--edit", phantoms,
                                   "--n", "3", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "leave out --n" in str(res.exception)
