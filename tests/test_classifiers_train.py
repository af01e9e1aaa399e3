"""Classifier training, checkpoints, prediction and the train-classifier / predict commands (tiny, CPU)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from pydantic import ValidationError
from typer.testing import CliRunner

from cxraug.classifiers import ClassifierConfig, TrainedClassifier, evaluate, train_classifier
import cxraug.classifiers.train
from cxraug.classifiers.loss import WeightedCE, class_weight_tensor
from cxraug.classifiers.trained import build_from_config, undertrained_note
from cxraug.cli import app
from cxraug.data.imageset import ImageSet
from cxraug.errors import CxraugError

CLASSES = ["COVID", "Normal", "Viral_Pneumonia"]


def bands(n: int, seed: int, size: int = 16) -> ImageSet:
    """Noisy images whose class is the row of a bright band: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 80, (n, size, size)).astype(np.uint8)
    step = size // 3
    for i, c in enumerate(labels):
        images[i, c * step:(c + 1) * step] += 120
    return ImageSet(images, labels, list(CLASSES), paths=[f"s{seed}/{i}.png" for i in range(n)],
                    meta={"preprocess": {"size": size}})


def tiny(**kw) -> ClassifierConfig:
    base = dict(model="custom-cnn", epochs=2, batch_size=8, lr=1e-3, early_stopping=False, seed=0)
    return ClassifierConfig(**{**base, **kw})


def test_same_seed_twice_gives_identical_metrics() -> None:
    train, val, test = bands(24, 0), bands(12, 1), bands(12, 2)
    cfg = tiny(augment="fedoruk")
    a, b = train_classifier(train, val, cfg, device="cpu"), train_classifier(train, val, cfg, device="cpu")
    assert evaluate(a, test, device="cpu") == evaluate(b, test, device="cpu")
    assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    c = train_classifier(train, val, tiny(augment="fedoruk", seed=1), device="cpu")
    assert not torch.equal(c.model.fc.weight, a.model.fc.weight)


@pytest.mark.parametrize("model,size", [("custom-cnn", 16), ("resnet18", 32)])
def test_channels_last_is_the_default_and_computes_the_same_model(model: str, size: int) -> None:
    """Classifiers default to channels_last (faster for every registered model in bench/step_formats.py): the
    layout of the weights changes, not the function. The same weights give the same logits and (without dropout)
    the same gradients up to rounding (reproducibility from a seed: the test above runs the default)."""
    nets = {}
    for layout in (True, False):
        torch.manual_seed(0)
        nets[layout] = build_from_config(tiny(model=model, channels_last=layout), 3, size, load_weights=False)
    kernels = [p for p in nets[True].parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                           for p in kernels)
    assert all(p.is_contiguous() for p in nets[False].parameters())
    assert tiny(model=model).channels_last
    x, y = torch.rand(8, 1, size, size) * 2 - 1, torch.arange(8) % 3
    with torch.no_grad():
        torch.testing.assert_close(nets[True].eval()(x), nets[False].eval()(x), rtol=1e-4, atol=1e-5)
    if model == "resnet18":  # no dropout (4-d dropout draws its masks in memory order: other, equally likely masks)
        for net in nets.values():
            torch.nn.functional.cross_entropy(net.train()(x), y).backward()
        for (name, p), q in zip(nets[True].named_parameters(), nets[False].parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4, msg=name)


def _val_loss(model: TrainedClassifier, val: ImageSet) -> float:
    p = model.predict_proba(val.images, device="cpu")
    return float(-np.log(p[np.arange(len(val)), val.labels]).mean())


def test_early_stopping_restores_the_best_check() -> None:
    train = bands(24, 0)
    val = bands(24, 0)
    val.labels = (val.labels + 1) % 3  # the better the fit, the worse the validation loss
    trained = train_classifier(train, val, tiny(epochs=12, patience=2, early_stopping=True, monitor="val_loss", lr=3e-3), device="cpu")
    losses = [h["val_loss"] for h in trained.history]
    best = int(np.argmin(losses)) + 1
    assert trained.best_check == best and trained.best_step == trained.history[best - 1]["steps"]
    assert len(trained.history) == best + 2 < 12  # stopped after `patience` checks without improvement
    assert trained.converged is True
    assert _val_loss(trained, val) == pytest.approx(losses[best - 1], rel=1e-4)
    assert _val_loss(trained, val) < losses[-1] - 1e-3


def test_default_monitor_is_validation_macro_f1_with_loss_as_tie_break() -> None:
    from cxraug.classifiers.train import macro_f1

    assert macro_f1(torch.tensor([[3, 1], [0, 0]])) == pytest.approx(2 * 3 / (4 + 3))  # absent class 1 ignored
    train, val = bands(24, 0), bands(24, 1)
    trained = train_classifier(train, val, tiny(epochs=6, lr=3e-3), device="cpu")
    scores = [(h["val_f1"], -h["val_loss"]) for h in trained.history]
    assert trained.best_check == scores.index(max(scores)) + 1
    for h in trained.history:  # the recorded macro-F1 is sklearn's on the same predictions' confusion
        assert 0.0 <= h["val_f1"] <= 1.0
    p = trained.predict_proba(val.images, device="cpu").argmax(1)
    from sklearn.metrics import f1_score

    assert trained.history[trained.best_check - 1]["val_f1"] == pytest.approx(
        f1_score(val.labels, p, average="macro"), abs=1e-6)


def test_max_steps_and_eval_every_are_exact_whatever_the_training_size() -> None:
    for n in (12, 60):
        trained = train_classifier(bands(n, 0), bands(6, 1), tiny(epochs=3, max_steps=7, eval_every=3),
                                   device="cpu")
        assert [h["steps"] for h in trained.history] == [3, 6, 7]
    # without eval_every a check comes after every pass over the training images (12 images / batch 8 = 2 steps)
    trained = train_classifier(bands(12, 0), bands(6, 1), tiny(epochs=3), device="cpu")
    assert [h["steps"] for h in trained.history] == [2, 4, 6]
    assert [h["epoch"] for h in trained.history] == [1, 2, 3]


def test_patience_is_counted_in_optimiser_steps_not_passes() -> None:
    """An arm with 5x more images per pass gets no more patience (in steps) when eval_every is shared."""
    val = bands(24, 0)
    val.labels = (val.labels + 1) % 3  # validation loss rises from the first check on
    cfg = tiny(epochs=20, max_steps=40, eval_every=2, patience=3, early_stopping=True, lr=3e-3)
    small = train_classifier(bands(12, 0), val, cfg, device="cpu")
    large = train_classifier(bands(60, 0), val, cfg, device="cpu")
    for trained in (small, large):
        assert trained.steps == trained.best_step + 3 * 2  # stopped 3 checks of 2 steps after the best
    assert small.best_step == large.best_step == 2


def test_a_run_still_improving_at_the_end_of_its_budget_is_flagged() -> None:
    train, val = bands(24, 0), bands(24, 1)
    short = train_classifier(train, val, tiny(epochs=3, lr=3e-3), device="cpu")
    assert short.best_check == len(short.history)  # validation loss still falling
    assert short.converged is False
    assert "undertrained" in undertrained_note(short)
    over = bands(24, 0)
    over.labels = (over.labels + 1) % 3
    long = train_classifier(train, over, tiny(epochs=8, patience=2, lr=3e-3), device="cpu")
    assert long.best_check <= len(long.history) - 2 and long.converged is True  # the full budget, no early stop
    assert len(long.history) == 8
    no_val = train_classifier(train, train.subset(np.zeros(0, dtype=np.int64)), tiny(epochs=1), device="cpu")
    assert no_val.converged is None


def test_patience_null_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValidationError, match="set early_stopping: false"):
        ClassifierConfig(patience=None)


@pytest.mark.parametrize("schedule,expected", [
    ("step", [1e-2, 1e-2, 5e-3, 5e-3]),
    ("exponential", [1e-2, 5e-3, 2.5e-3, 1.25e-3]),
    ("cosine", [1e-2 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]),
])
def test_schedules(schedule: str, expected: list[float]) -> None:
    cfg = tiny(epochs=4, max_steps=4, eval_every=1, lr=1e-2, schedule=schedule, step_size=2, gamma=0.5,
               optimizer="sgd")
    trained = train_classifier(bands(6, 0), bands(6, 1), cfg, device="cpu")
    assert [h["lr"] for h in trained.history] == pytest.approx(expected)


#: the optimiser class and the settings each ``optimizer`` name must give (RMSprop: Keras' rho 0.9, eps 1e-7)
OPTIMIZERS = {"adam": (torch.optim.Adam, {}), "adamw": (torch.optim.AdamW, {}),
              "sgd": (torch.optim.SGD, {"momentum": 0.9}),
              "rmsprop": (torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-7, "momentum": 0, "centered": False})}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_optimizers_learn(optimizer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[torch.optim.Optimizer] = []
    real = cxraug.classifiers.train.make_optimizer

    def spy(*args, **kwargs) -> torch.optim.Optimizer:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(cxraug.classifiers.train, "make_optimizer", spy)
    lr = 0.05 if optimizer == "sgd" else 2e-3
    trained = train_classifier(bands(24, 0), bands(12, 1), tiny(epochs=3, optimizer=optimizer, lr=lr,
                                                                 weight_decay=1e-4), device="cpu")
    assert trained.history[-1]["train_loss"] < trained.history[0]["train_loss"]
    cls, settings = OPTIMIZERS[optimizer]
    assert made and type(made[0]) is cls  # the Fabric wrapper is made later; this is the optimiser it steps
    group = made[0].param_groups[0]
    assert group["lr"] == pytest.approx(lr) and group["weight_decay"] == pytest.approx(1e-4)
    assert {k: group[k] for k in settings} == pytest.approx(settings)


def test_class_weights_from_training_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])  # class 2 absent
    w = class_weight_tensor(labels, 3)
    assert w.tolist() == pytest.approx([8 / (3 * 6), 8 / (3 * 2), 0.0])
    losses: list[WeightedCE] = []
    init = WeightedCE.__init__

    def spy(self: WeightedCE, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        losses.append(self)

    monkeypatch.setattr(WeightedCE, "__init__", spy)
    train = bands(24, 0).subset(np.r_[0:24:3, 1:24:3, 2:8:3])  # 8 / 8 / 2 images
    trained = train_classifier(train, bands(6, 1), tiny(epochs=1, class_weights=True), device="cpu")
    assert len(trained.history) == 1
    expected = [18 / (3 * 8), 18 / (3 * 8), 18 / (3 * 2)]
    # the loss the optimiser minimises is weighted by the balanced weights of the training labels
    assert len(losses) == 1 and losses[0].weight.tolist() == pytest.approx(expected)
    assert losses[0]._sum.weight.tolist() == pytest.approx(expected)
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 0])
    by_hand = -(torch.tensor(expected)[y] * torch.log_softmax(logits, 1)[torch.arange(5), y]).sum()
    assert float(losses[0].sum(logits, y)) == pytest.approx(float(by_hand), rel=1e-6)
    losses.clear()
    train_classifier(train, bands(6, 1), tiny(epochs=1, class_weights=False), device="cpu")
    assert losses[0].weight.tolist() == [1.0, 1.0, 1.0]


def test_transfer_learning_fine_tunes_only_the_last_block(tmp_path) -> None:
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    cfg = ClassifierConfig(model="resnet18", weights=str(tmp_path / "r18.pth"), epochs=1, batch_size=8,
                           early_stopping=False, unfreeze_last_epochs=1, unfreeze_lr=1e-4)
    trained = train_classifier(bands(16, 0, size=32), bands(6, 1, size=32), cfg, device="cpu")
    assert [(h["phase"], h["lr"]) for h in trained.history] == [("train", 1e-3), ("fine-tune", 1e-4)]
    state = trained.model.backbone.state_dict()
    ref = tv.state_dict()
    assert all(torch.equal(state[k], ref[k]) for k in ref if k.startswith(("layer3", "conv1", "bn1")))
    changed = not all(torch.equal(state[k], ref[k]) for k in ref if k.startswith("layer4"))
    assert changed == (trained.best_check == 2)


def test_checkpoint_round_trip_and_predict_command(tmp_path) -> None:
    train, val, test = bands(12, 0), bands(6, 1), bands(6, 2)
    trained = train_classifier(train, val, tiny(epochs=1), out_dir=tmp_path / "run", device="cpu")
    assert (tmp_path / "run" / "history.csv").read_text().startswith("check,phase,steps,epoch,lr,")
    loaded = TrainedClassifier.load(tmp_path / "run" / "best.pt")
    assert loaded.classes == CLASSES and loaded.config == trained.config
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in loaded.model.parameters() if p.dim() == 4)
    assert (loaded.best_check, loaded.converged) == (trained.best_check, trained.converged)
    expected = trained.predict_proba(test.images, device="cpu")
    assert np.allclose(loaded.predict_proba(test.images, device="cpu"), expected, atol=1e-6)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(test.images):
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(tmp_path / "run" / "best.pt"), str(folder),
                                      "--out", str(tmp_path / "pred.csv"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["00.png", "01.png", "02.png", "03.png", "04.png",
                                                          "05.png", "broken.png"]
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows[:6]])
    assert np.allclose(probs, expected, atol=1e-5)
    assert rows[6]["error"] and not rows[6]["prediction"]


def test_non_weights_only_checkpoint_is_refused(tmp_path) -> None:
    torch.save({"format": "cxraug-classifier/1", "model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(CxraugError, match="not a weights-only"):
        TrainedClassifier.load(tmp_path / "pickled.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CxraugError, match="not a cxraug classifier checkpoint"):
        TrainedClassifier.load(tmp_path / "other.pt")


def test_config_refuses_unknown_fields_and_names() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ClassifierConfig(modle="resnet18")
    with pytest.raises(ValidationError, match="known: custom-cnn"):
        ClassifierConfig(model="resnet19")
    with pytest.raises(ValidationError, match="augmentation policy"):
        ClassifierConfig(augment="mixup")
    with pytest.raises(ValidationError, match="unfreeze_last_epochs needs"):
        ClassifierConfig(unfreeze_last_epochs=2)
    with pytest.raises(CxraugError, match="asks for 32 px"):
        train_classifier(bands(6, 0), bands(6, 1), tiny(size=32), device="cpu")


def test_train_classifier_command(tmp_path) -> None:
    root = tmp_path / "data"
    images = bands(45, 0, size=32)
    for i, (img, label) in enumerate(zip(images.images, images.labels)):
        (root / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / CLASSES[label] / f"{i}.png")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train-classifier", "--data", str(root), "--model", "custom-cnn", "--size", "16",
                                      "--epochs", "2", "--augment", "flip", "--out", str(out), "--device", "cpu",
                                      "--val-frac", "0.2", "--test-frac", "0.2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == CLASSES and metrics["n"] == sum(metrics["test_counts"].values())
    assert len(metrics["confusion_matrix"]) == 3 and metrics["config"]["augment"] == "flip"
    assert (out / "confusion.png").stat().st_size > 0 and (out / "best.pt").is_file()
    assert len((out / "history.csv").read_text().splitlines()) == 3


@pytest.mark.slow
def test_training_on_phantoms_beats_chance_clearly() -> None:
    from cxraug.data.phantom import draw_phantoms

    def phantoms(n: int, seed: int) -> ImageSet:
        parts = [draw_phantoms(name, n, size=32, seed=seed, severity=1.0)[0] for name in ("COVID", "Normal",
                                                                                         "Lung_Opacity")]
        return ImageSet(np.concatenate(parts), np.repeat(np.arange(3), n), ["COVID", "Normal", "Lung_Opacity"])

    cfg = ClassifierConfig(model="custom-cnn", epochs=25, batch_size=32, lr=1e-3, patience=6, seed=0)
    trained = train_classifier(phantoms(100, 0), phantoms(30, 1), cfg, device="cpu")
    metrics = evaluate(trained, phantoms(60, 2), device="cpu")
    assert metrics["accuracy"] > 0.6 and metrics["macro_f1"] > 0.55  # chance: 1/3


def test_train_classifier_command_reports_bad_options_in_one_line(tmp_path) -> None:
    result = CliRunner().invoke(app, ["train-classifier", "--model", "resnet19", "--out", str(tmp_path)],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 2 and "'resnet19' is not one of 'custom-cnn'" in result.output  # the choices
    result = CliRunner().invoke(app, ["train-classifier", "--lr", "-1", "--batch-size", "0", "--out", str(tmp_path)])
    assert result.exit_code != 0 and isinstance(result.exception, CxraugError)
    assert "--lr: Input should be greater than 0" in str(result.exception)
    assert "--batch-size: Input should be greater than or equal to 1" in str(result.exception)


def test_fixed_class_weights_are_used_as_given_and_checked() -> None:
    """A study passes the real subset's weights as a list: they must not be recomputed from the arm's images."""
    from cxraug.classifiers.train import loss_weights

    labels = np.array([0, 0, 0, 1])  # an arm with extra synthetic class-0 images
    fixed = ClassifierConfig(model="custom-cnn", class_weights=[0.25, 2.0, 1.0])
    assert loss_weights(fixed, labels, 3).tolist() == [0.25, 2.0, 1.0]
    balanced = loss_weights(ClassifierConfig(model="custom-cnn", class_weights=True), labels, 3)
    assert balanced[0] < balanced[1] and balanced[2] == 0
    assert loss_weights(ClassifierConfig(model="custom-cnn", class_weights=False), labels, 3) is None
    assert ClassifierConfig().class_weights is True  # balanced by default
    with pytest.raises(CxraugError, match="3 classes"):
        loss_weights(ClassifierConfig(model="custom-cnn", class_weights=[1.0, 1.0]), labels, 3)


def test_automatic_budget_is_counted_in_steps_for_small_data() -> None:
    from cxraug.classifiers.config import MIN_BUDGET_STEPS, MIN_EVAL_STEPS
    from cxraug.classifiers.steps import default_budget

    auto = ClassifierConfig()  # no budget given: automatic
    assert default_budget(auto, 150) == (MIN_EVAL_STEPS, MIN_BUDGET_STEPS)  # 5 steps a pass: floors apply
    assert default_budget(auto, 3200) == (100, 40 * 100)  # 100 steps a pass: 40 passes
    assert default_budget(ClassifierConfig(epochs=3), 150) == (5, 15)  # an explicit budget is exact
    assert default_budget(ClassifierConfig(max_steps=50, eval_every=7), 150) == (7, 50)
    trained = train_classifier(bands(24, 0), bands(6, 1), tiny(epochs=None, early_stopping=False), device="cpu")
    assert [h["steps"] for h in trained.history][:2] == [MIN_EVAL_STEPS, 2 * MIN_EVAL_STEPS]
    assert trained.steps == MIN_BUDGET_STEPS
