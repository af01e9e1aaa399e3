"""Classifier zoo: forward/backward, published parameter counts, documented structures, ImageNet transfer."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from cxraug.classifiers import CLASSIFIERS, build_classifier
from cxraug.classifiers.base import IMAGENET_MEAN, IMAGENET_STD
from cxraug.classifiers.heads import HEADS
from cxraug.errors import CxraugError, MissingWeightsError


def _size(model: str) -> int:
    return 75 if model == "inception-v3" else 32


@pytest.mark.parametrize("model", CLASSIFIERS.names())
def test_every_model_forward_backward(model: str) -> None:
    size = _size(model)
    net = build_classifier(model, num_classes=3, size=size)
    x = torch.rand(2, 1, size, size) * 2 - 1
    logits = net(x)
    assert logits.shape == (2, 3)
    feats = net.features(x)
    assert feats.shape == (2, net.num_features)
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    net.eval()
    assert torch.allclose(net.fc(net.features(x)), net(x), atol=1e-5)


@pytest.mark.parametrize("head", HEADS.names())
def test_every_head_preset_builds_on_its_backbone(head: str) -> None:
    model = HEADS.get(head).models[0] if HEADS.get(head).models else "custom-cnn"
    with torch.device("meta"):
        net = build_classifier(model, num_classes=4, size=64, head=head)
        assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 4)


def test_head_preset_refused_on_other_backbone() -> None:
    with pytest.raises(CxraugError, match="defined for vgg16"):
        build_classifier("resnet18", 3, 32, head="pisa-vgg16")


def _keras_count(net: nn.Module) -> int:
    """Parameters as Keras counts them: BatchNorm moving mean and variance included."""
    stats = sum(m.running_mean.numel() + m.running_var.numel() for m in net.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return sum(p.numel() for p in net.parameters()) + stats


def test_published_parameter_counts() -> None:
    with torch.device("meta"):
        cnn = build_classifier("custom-cnn", 3, 224, in_channels=3)
        vgg = build_classifier("vgg16", 3, 224, head="pisa-vgg16", in_channels=3)
    assert sum(p.numel() for p in cnn.parameters()) == 3_043_689  # trainable, as published
    assert _keras_count(cnn) == 3_043_695
    assert _keras_count(vgg) == 17_926_467
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vgg.backbone.modules())  # Keras VGG-16 has none
    with torch.device("meta"):
        iit = build_classifier("vgg16", 3, 64)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in iit.backbone.modules()) == 13
    assert [m.p for m in iit.neck if isinstance(m, nn.Dropout)] == [0.3] * 3
    assert sum(m.out_features == 4096 for m in iit.neck if isinstance(m, nn.Linear)) == 3


def test_simple_resnet18_matches_its_docstring() -> None:
    net = build_classifier("simple-resnet18", 3, 32)
    convs = [m for m in net.backbone.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 7 and max(c.out_channels for c in convs) == 256
    assert [m.p for m in net.backbone.modules() if isinstance(m, nn.Dropout)] == [0.3] * 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.backbone.modules()) == 3
    assert isinstance(net.neck[0], nn.AdaptiveMaxPool2d)
    x = torch.rand(2, 1, 32, 32)
    net.eval()
    fmap = net.backbone(x)
    assert fmap.shape == (2, 256, 4, 4)
    assert torch.equal(net.features(x), fmap.amax(dim=(2, 3)))


def test_ib_resnet_matches_its_docstring() -> None:
    from cxraug.classifiers.ib_resnet import Block, InvertedBottleneck

    net = build_classifier("ib-resnet", 3, 32).eval()
    blocks = [m for m in net.backbone.modules() if isinstance(m, Block)]
    ibs = [m for m in net.backbone.modules() if isinstance(m, InvertedBottleneck)]
    assert len(blocks) == 3 and len(ibs) == 6
    kernels = [m.kernel_size[0] for m in ibs[0].layers.modules() if isinstance(m, nn.Conv2d)]
    assert kernels == [1, 3, 5, 1]
    assert ibs[0].layers[0][0].out_channels == 4 * 32
    assert net.backbone(torch.rand(2, 1, 32, 32)).shape == (2, 256, 4, 4)
    ib = ibs[0]  # residual: a zeroed last BatchNorm makes the bottleneck the identity
    nn.init.zeros_(ib.layers[-1].weight)
    x = torch.rand(1, 32, 8, 8)
    assert torch.equal(ib(x), x)


def _save_random_torchvision(tmp_path, arch: str, **kwargs) -> tuple[nn.Module, str]:
    tv = getattr(torchvision.models, arch)(weights=None, **kwargs).eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(tv.state_dict(), path)
    return tv, str(path)


def test_imagenet_weights_from_path_resnet(tmp_path) -> None:
    tv, path = _save_random_torchvision(tmp_path, "resnet18")
    net = build_classifier("resnet18", 3, 32, head="york-resnet50", weights=path)
    # one-channel adaptation = replication to RGB, kept conv1; ImageNet mean/std applied to [-1, 1] inputs
    assert net.backbone.conv1.in_channels == 3
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    rgb = ((x.repeat(1, 3, 1, 1) + 1) / 2 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)
    tv.fc = nn.Identity()
    net.eval()
    assert torch.allclose(net.features(x), tv(rgb), atol=1e-5)
    # frozen backbone, trainable head; frozen BatchNorm stays in eval mode and keeps its statistics
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(p.requires_grad for p in net.fc.parameters())
    net.train()
    bns = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    before = bns[0].running_mean.clone()
    net(x).sum().backward()
    assert torch.equal(bns[0].running_mean, before)
    net.unfreeze_last_block()
    assert all(p.requires_grad for p in net.backbone.layer4.parameters())
    assert not any(p.requires_grad for p in net.backbone.layer3.parameters())
    assert all(m.training for m in net.backbone.layer4.modules() if isinstance(m, nn.BatchNorm2d))


def test_imagenet_weights_from_path_inception(tmp_path) -> None:
    tv, path = _save_random_torchvision(tmp_path, "inception_v3", aux_logits=True, init_weights=False,
                                        transform_input=True)  # torchvision's own input handling
    net = build_classifier("inception-v3", 3, 75, weights=path).eval()  # AuxLogits keys are ignored
    x = torch.rand(2, 1, 75, 75) * 2 - 1
    rgb = ((x.repeat(1, 3, 1, 1) + 1) / 2 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)
    tv.fc = nn.Identity()
    ours = net.backbone(net.adapter(x)).mean(dim=(2, 3))
    assert torch.allclose(ours, tv(rgb), atol=1e-4)


def test_wrong_weights_file_is_named(tmp_path) -> None:
    _, path = _save_random_torchvision(tmp_path, "resnet18")
    with pytest.raises(CxraugError, match="do not fit torchvision resnet34"):
        build_classifier("resnet34", 3, 32, weights=path)


def test_pickled_weights_file_is_refused(tmp_path) -> None:
    path = tmp_path / "model.pth"
    torch.save(nn.Linear(2, 2), path)  # a pickled module, not a state dict
    with pytest.raises(CxraugError, match="not a weights-only"):
        build_classifier("resnet18", 3, 32, weights=str(path))


def test_offline_without_weights_gives_one_clear_error(monkeypatch, tmp_path) -> None:
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(MissingWeightsError, match="--weights PATH") as info:
        build_classifier("resnet50", 3, 32, pretrained=True)
    assert "resnet50-" in str(info.value)  # names the file to fetch


def test_models_without_imagenet_weights_refuse_pretrained() -> None:
    with pytest.raises(CxraugError, match="no ImageNet weights"):
        build_classifier("custom-cnn", 3, 32, pretrained=True)


def test_too_small_input_is_refused() -> None:
    with pytest.raises(CxraugError, match="at least 75 px"):
        build_classifier("inception-v3", 3, 64)
