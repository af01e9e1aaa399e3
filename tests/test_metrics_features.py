"""Feature extractors: domain encoder reuse by hash, offline failures and local-file success paths of
inception and xrv, FID monotone under noise and blur, the generator scorer."""

import numpy as np
import pytest
import torch
from metrics_helpers import phantoms
from scipy.ndimage import gaussian_filter

from cxraug.errors import CxraugError, MissingWeightsError
from cxraug.metrics import encoder as enc
from cxraug.metrics.features import get_extractor
from cxraug.metrics.fid import fid
from cxraug.metrics.scorer import make_scorer

TINY = enc.EncoderConfig(size=32, epochs=3, batch_size=16)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("encoders"))


@pytest.fixture(scope="module")
def domain(encoder_dir):
    return get_extractor("domain", train=phantoms(24, 32, seed=0), cache_dir=encoder_dir, encoder=TINY)


def test_domain_encoder_is_reused_not_retrained_when_the_hash_matches(domain, encoder_dir, monkeypatch) -> None:
    info = domain.describe()
    assert info["extractor"] == "domain" and info["dims"] == 512 and info["encoder_trained_now"]
    assert "32 px" in info["resize"]

    def no_training(*_a, **_k):
        raise AssertionError("the encoder was retrained")

    monkeypatch.setattr(enc, "train_encoder", no_training)
    again = get_extractor("domain", train=phantoms(24, 32, seed=0), cache_dir=encoder_dir, encoder=TINY)
    assert again.describe()["hash"] == info["hash"] and not again.describe()["encoder_trained_now"]
    imgs = phantoms(2, 32, seed=5).images
    np.testing.assert_array_equal(again(imgs), domain(imgs))
    np.testing.assert_array_equal(get_extractor("domain", weights=info["weights"])(imgs), domain(imgs))
    with pytest.raises(AssertionError, match="retrained"):  # another config is another encoder
        get_extractor("domain", train=phantoms(24, 32, seed=0), cache_dir=encoder_dir,
                      encoder=TINY.model_copy(update={"seed": 1}))


def test_domain_needs_its_training_split() -> None:
    with pytest.raises(CxraugError, match="training split"):
        get_extractor("domain")


def test_fid_grows_monotonically_with_noise_and_blur(domain) -> None:
    real, base = phantoms(24, 32, seed=1).images, phantoms(24, 32, seed=2).images
    rng = np.random.default_rng(0)
    noisy = [np.clip(base + rng.normal(0, s, base.shape), 0, 255).astype(np.uint8) for s in (0, 15, 40, 80)]
    blurred = [np.stack([gaussian_filter(im.astype(float), s) for im in base]).round().astype(np.uint8)
               for s in (0.01, 0.8, 1.6, 3.0)]
    for series in (noisy, blurred):
        values = [fid(domain(real), domain(x)) for x in series]
        assert all(a < b for a, b in zip(values, values[1:])), values


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> str:
    """Random FID-Inception weights in torch-fidelity's key format (no download: loading is stubbed out)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with pytest.MonkeyPatch.context() as m:
        m.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        net = tfi.FeatureExtractorInceptionV3("random", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    torch.save(net.state_dict(), path)
    return str(path)


def test_inception_offline_without_weights_gives_one_clear_message(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("CXRAUG_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match="does not download.*--features domain"):
        get_extractor("inception")


@pytest.mark.parametrize("dims", [2048, 768])
def test_inception_from_local_file_equals_torchmetrics_extractor(dims, inception_file) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = inception_file
    ours = get_extractor("inception", dims=dims, weights=path)
    imgs = phantoms(1, 32, seed=3).images
    reference = FrechetInceptionDistance(feature=dims, feature_extractor_weights_path=path).inception
    expected = reference(torch.as_tensor(imgs).unsqueeze(1).expand(-1, 3, -1, -1).contiguous())
    np.testing.assert_allclose(ours(imgs), expected.double().numpy(), rtol=1e-5, atol=1e-6)
    assert ours.describe()["dims"] == dims and ours.describe()["weights"] == path


def test_xrv_without_the_package_gives_one_clear_message(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torchxrayvision", None)
    with pytest.raises(MissingWeightsError, match="cxraug\\[xrv\\]"):
        get_extractor("xrv")


def test_xrv_offline_and_from_local_files(tmp_path) -> None:
    xrv = pytest.importorskip("torchxrayvision")
    with pytest.raises(MissingWeightsError, match="does not download"):
        get_extractor("xrv", cache_dir=str(tmp_path / "empty"))
    torch.manual_seed(0)
    net = xrv.models.DenseNet(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "xrv_state.pt")
    ours = get_extractor("xrv", weights=str(tmp_path / "xrv_state.pt"))
    imgs = phantoms(1, 32, seed=4).images
    x = torch.as_tensor(xrv.datasets.normalize(imgs.astype(np.float32), 255)).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        expected = net.features2(x).double().numpy()
    np.testing.assert_allclose(ours(imgs), expected, rtol=1e-4, atol=1e-5)
    assert ours.describe()["dims"] == 1024 and "[-1024, 1024]" in ours.describe()["resize"]
    # the official distribution format (a pickled model) in torchxrayvision's cache folder
    url = xrv.models.model_urls["densenet121-res224-all"]["weights_url"]
    torch.save(net, tmp_path / url.rsplit("/", 1)[-1])
    official = get_extractor("xrv", cache_dir=str(tmp_path))
    np.testing.assert_allclose(official(imgs), expected, rtol=1e-4, atol=1e-5)


def test_scorer_ranks_samples_and_scores_per_class(domain) -> None:
    real = phantoms(20, 32, seed=6)
    scorer = make_scorer(real.images, real.labels, domain, size=32)
    good = phantoms(20, 32, seed=7)
    noise = np.random.default_rng(0).integers(0, 256, good.images.shape).astype(np.uint8)
    s_good, s_noise = scorer(good.images, good.labels), scorer(noise, good.labels)
    assert set(s_good) >= {"kid", "kid_sd", "kid/0", "kid/1"}
    assert s_good["kid"] < 0.2 * s_noise["kid"]
    unlabelled = scorer(good.images, None)
    assert set(unlabelled) == {"kid", "kid_sd"} and isinstance(unlabelled["kid"], float)
    assert scorer.describe()["extractor"] == "domain" and scorer.describe()["n_real"] == 40
    upsampled = scorer(np.kron(good.images, np.ones((1, 2, 2), np.uint8)), good.labels)  # 64 px samples
    assert upsampled["kid"] < 0.2 * s_noise["kid"]
    assert "fid" in make_scorer(real.images, None, domain, size=32, metric="kid+fid")(good.images)
    capped = make_scorer(real.images, real.labels, domain, size=32, max_real=10).describe()
    assert capped["n_real"] == 10 and capped["real_per_class"] == {0: 5, 1: 5}
