"""FID, KID and PRDC on features: closed forms, torchmetrics references, small-N behaviour."""

import numpy as np
import pytest
import torch

from cxraug.metrics.fid import fid, fid_with_ci, frechet_distance
from cxraug.metrics.kid import kid, mmd2_unbiased
from cxraug.metrics.prdc import prdc


def test_frechet_distance_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_full_covariances_matches_scipy_sqrtm() -> None:
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_samples_approaches_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(20000, 3))
    y = rng.normal(0.5, 2.0, size=(20000, 3))
    expected = 3 * 0.5**2 + 3 * (1 - 2) ** 2  # 3.75
    assert fid(x, y) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("n", [20, 200])  # fewer and more samples than dimensions (two code paths)
def test_fid_equals_torchmetrics_on_identical_features(n: int) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Identity(torch.nn.Module):
        num_features = 64

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    rng = np.random.default_rng(3)
    real = rng.normal(size=(n, 64))
    fake = rng.normal(0.3, 1.2, size=(n + 7, 64))
    metric = FrechetInceptionDistance(feature=Identity())
    metric.update(torch.as_tensor(real), real=True)
    metric.update(torch.as_tensor(fake), real=False)
    assert fid(real, fake) == pytest.approx(float(metric.compute()), rel=1e-6)


def test_fid_bootstrap_interval_and_small_n_warning() -> None:
    rng = np.random.default_rng(4)
    out = fid_with_ci(rng.normal(size=(30, 40)), rng.normal(0.5, 1, size=(30, 40)), n_boot=50)
    lo, hi = out["fid_ci"]
    assert lo < hi and lo <= out["fid"] * 1.5
    assert any("30 images < 40" in w for w in out["warnings"])
    assert fid_with_ci(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)), n_boot=0)["warnings"] == []


def _reference_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook unbiased MMD² with k(a, b) = (a·b / d + 1)^3, written with explicit loops over pairs."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_equals_reference_unbiased_mmd() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 8)), rng.normal(0.4, 1.0, size=(25, 8))
    ref = _reference_mmd2(x, y)
    assert mmd2_unbiased(x, y) == pytest.approx(ref, rel=1e-10)
    # one subset covering both (equal-sized) sets is the full-set estimate
    one = kid(x[:25], y, subset_size=25, n_subsets=1, n_boot=0)
    assert one["kid_subset_size"] == 25
    assert one["kid"] == pytest.approx(_reference_mmd2(x[:25], y), rel=1e-10)


def test_kid_is_near_zero_for_identical_distributions_and_works_with_50_images() -> None:
    rng = np.random.default_rng(6)
    same = kid(rng.normal(size=(50, 16)), rng.normal(size=(50, 16)), n_boot=50)
    shifted = kid(rng.normal(size=(50, 16)), rng.normal(1.0, 1.0, size=(50, 16)), n_boot=50)
    assert same["kid_subset_size"] == 25
    assert abs(same["kid"]) < 0.05 * shifted["kid"]
    assert same["kid_ci"][0] <= 0 <= same["kid_ci"][1]
    assert shifted["kid_ci"][0] > 0 and shifted["kid_sd"] > 0


def test_prdc_mode_dropping_keeps_precision_and_lowers_recall_coverage() -> None:
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)

    def sample(modes: list[int], n: int) -> np.ndarray:
        idx = rng.choice(modes, n)
        return centres[idx] + rng.normal(size=(n, 2))

    real = sample([0, 1, 2, 3], 400)
    full = prdc(real, sample([0, 1, 2, 3], 400))
    dropped = prdc(real, sample([0, 1], 400))
    assert full["precision"] > 0.9 and dropped["precision"] > 0.9
    assert full["recall"] > 0.9 and full["coverage"] > 0.9
    assert dropped["recall"] < 0.6 and dropped["coverage"] < 0.6
    assert 0.7 < full["density"] < 1.3


def test_prdc_lowers_k_for_tiny_sets() -> None:
    rng = np.random.default_rng(8)
    assert prdc(rng.normal(size=(4, 3)), rng.normal(size=(3, 3)))["prdc_k"] == 2


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_equals_the_prdc_package(k: int) -> None:
    """Naeem et al.'s reference implementation (the ``prdc`` package) gives the same four numbers."""
    reference = pytest.importorskip("prdc", reason="the prdc package (dev extra) is the reference").compute_prdc
    rng = np.random.default_rng(10 + k)
    real = rng.normal(size=(120, 6))
    fake = np.concatenate([rng.normal(0.3, 1.1, size=(80, 6)), rng.normal(3.0, 0.5, size=(20, 6))])
    ours, theirs = prdc(real, fake, k=k), reference(real, fake, nearest_k=k)
    assert ours["prdc_k"] == k
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(theirs[name]), rel=1e-12, abs=1e-12), name


def test_kid_equals_torchmetrics_on_the_same_subsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchmetrics' KernelInceptionDistance on features, made to draw the subsets cxraug's seeded KID draws,
    gives the same mean and (population vs sample) standard deviation."""
    import torchmetrics.image.kid as tm_kid

    class Identity(torch.nn.Module):
        num_features = 16

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(60, 16)), rng.normal(0.4, 1.2, size=(50, 16))
    size, subsets, seed = 20, 7, 3
    ours = kid(real, fake, subset_size=size, n_subsets=subsets, n_boot=0, seed=seed)
    draws = np.random.default_rng(seed)  # kid() draws a real subset, then a fake one, per subset
    perms = []
    for _ in range(subsets):
        for n in (len(real), len(fake)):
            chosen = draws.choice(n, size, replace=False)
            perms.append(torch.as_tensor(np.r_[chosen, np.setdiff1d(np.arange(n), chosen)]))
    monkeypatch.setattr(tm_kid.torch, "randperm", lambda n, *a, **k: perms.pop(0))
    metric = tm_kid.KernelInceptionDistance(feature=Identity(), subsets=subsets, subset_size=size)
    metric.update(torch.as_tensor(real), real=True)
    metric.update(torch.as_tensor(fake), real=False)
    mean, sd = metric.compute()
    assert not perms
    assert ours["kid"] == pytest.approx(float(mean), rel=1e-6)
    assert ours["kid_sd"] * np.sqrt((subsets - 1) / subsets) == pytest.approx(float(sd), rel=1e-5)
