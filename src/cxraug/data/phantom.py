"""Built-in phantom dataset: synthetic chest-radiograph phantoms. SYNTHETIC TEST DATA, NOT MEDICAL DATA.

Every phantom is drawn from a few dozen random numbers: body outline, two lungs (their mask is returned
too), heart, mediastinum, spine, ribs, clavicles and diaphragm, with random anatomy, pose, exposure, vessel
texture and noise. The four classes differ only inside the lungs:

- ``Normal``: clear lungs;
- ``COVID``: bilateral, peripheral, lower-zone ground-glass opacities;
- ``Viral Pneumonia``: diffuse bilateral interstitial haze with a reticular texture, strongest near the hila;
- ``Lung_Opacity``: one dense, lobulated focal consolidation in one lung.

``severity`` scales the lesions (each image draws its own strength between 25 % and 100 % of it), so at low
severity mild cases overlap with Normal and with each other. Measured with the tiny CNN of
``tests/test_phantom.py`` (32 px, 200 training images per class, 200 test images per class of other patients,
30 epochs, CPU): test accuracy 0.25 (chance) at severity 0, 0.48 at 0.25, 0.68 at the default 0.5, 0.85 at 1.0.

The same seed gives identical bytes on every machine with the same numpy/scipy. Anatomy (and the image
noise) and lesions come from separate random streams, so ``anatomy_seed`` (or :func:`draw_paired`) renders
the *same* patient once per class: the images differ only inside the lungs (image-to-image translation tests).
The first ``k`` images of ``draw_phantoms(label, n)`` equal ``draw_phantoms(label, k)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from cxraug.data.names import match_class
from cxraug.errors import CxraugError
from cxraug.ui import track

PHANTOM_CLASSES = ["COVID", "Normal", "Viral Pneumonia", "Lung_Opacity"]
PHANTOM_VERSION = 1  # bump when the renderer changes: it names the cache folder of :func:`phantom_root`
DEFAULT_SEVERITY = 0.5
_MIN_RENDER = 64  # smaller sizes are rendered at a multiple of the size >= 64 and block-averaged down
_CHUNK = 64  # images rendered at once (bounds memory at large sizes; results do not depend on it)
_ANATOMY, _LESION = 0, 1  # random-stream tags
_N_LESION_PARAMS = 19


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step 0 -> 1 over ``width`` around 0; exactly 0 below -width/2 (lesions never leak outside)."""
    return np.clip(0.5 + x / width, 0.0, 1.0)


def _col(a: np.ndarray) -> np.ndarray:
    """(n,) per-image parameters -> (n, 1, 1) for broadcasting against (n, R, R) grids."""
    return a.astype(np.float32)[:, None, None]


def _lerp(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return lo + (hi - lo) * u


def _smooth(white: np.ndarray, sigma_frac: float) -> np.ndarray:
    """White noise (n, R, R) low-passed at ``sigma_frac`` of the image width, rescaled to unit std per image."""
    res = white.shape[-1]
    z = gaussian_filter(white, sigma=(0, sigma_frac * res, sigma_frac * res), mode="wrap")
    return z / (z.std(axis=(1, 2), keepdims=True) + 1e-6)


def _segment_distance(u: np.ndarray, v: np.ndarray, p0: tuple[np.ndarray, np.ndarray],
                      p1: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Distance of every (u, v) to the segment p0-p1 (per-image endpoints of shape (n, 1, 1))."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * dx + (v - p0[1]) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(u - p0[0] - t * dx, v - p0[1] - t * dy)


class _Anatomy:
    """Per-image anatomy, pose and exposure parameters drawn row-wise (prefix-stable) from uniforms."""

    N_PARAMS = 26

    def __init__(self, u: np.ndarray) -> None:
        c = [u[:, i] for i in range(self.N_PARAMS)]
        self.rot = np.deg2rad(_lerp(c[0], -6.0, 6.0))
        self.tx, self.ty = _lerp(c[1], -0.05, 0.05), _lerp(c[2], -0.05, 0.05)
        self.scale = _lerp(c[3], 0.9, 1.05)
        self.body_w = _lerp(c[4], 0.78, 0.95)
        self.lung_x = _lerp(c[5], 0.32, 0.38)
        self.lung_y = _lerp(c[6], -0.1, 0.0)
        self.lung_ax = _lerp(c[7], 0.27, 0.33)
        self.lung_med = _lerp(c[8], 0.5, 0.65)  # medial semi-axis as a fraction of the lateral one
        self.lung_ay = _lerp(c[9], 0.58, 0.68)
        self.diaphragm = _lerp(c[10], 0.45, 0.65)  # dome top below the lung centre, in lung heights
        self.dome = _lerp(c[11], 0.1, 0.2)
        self.right_high = _lerp(c[12], 0.0, 0.08)  # the patient's right hemidiaphragm sits higher
        self.heart_x = _lerp(c[13], 0.08, 0.16)
        self.heart_y = _lerp(c[14], 0.22, 0.32)
        self.heart_ax = _lerp(c[15], 0.27, 0.34)
        self.heart_ay = _lerp(c[16], 0.2, 0.26)
        self.rib_space = _lerp(c[17], 0.14, 0.18)
        self.rib_phase = c[18]
        self.rib_curve = _lerp(c[19], 0.5, 1.0)
        self.clavicle = _lerp(c[20], -0.04, 0.04)
        self.gain = _lerp(c[21], 0.85, 1.15)
        self.offset = _lerp(c[22], -0.06, 0.06)
        self.gamma = _lerp(c[23], 0.8, 1.25)
        self.noise = _lerp(c[24], 0.008, 0.03)
        self.vessels = _lerp(c[25], 0.6, 1.4)


def _render(label_idx: int, anat_u: np.ndarray, lesion_u: np.ndarray, anat_z: np.ndarray, lesion_z: np.ndarray,
            severity: float) -> tuple[np.ndarray, np.ndarray]:
    """Render one chunk from per-image uniforms and white-noise fields (n, k, R, R): float images in [0, 1]
    and float lung masks in [0, 1], at R px."""
    res = anat_z.shape[-1]
    a = _Anatomy(anat_u)
    edge = 3.0 / res  # soft edges about 1.5 px wide
    grid = (np.arange(res, dtype=np.float32) + 0.5) / res * 2.0 - 1.0
    x, y = grid[None, None, :], grid[None, :, None]
    cos, sin, s = _col(np.cos(a.rot)), _col(np.sin(a.rot)), _col(a.scale)
    u = (cos * (x - _col(a.tx)) + sin * (y - _col(a.ty))) / s
    v = (-sin * (x - _col(a.tx)) + cos * (y - _col(a.ty))) / s

    bw = _col(a.body_w)
    body = _ramp(1.0 - (np.abs(u) / bw) ** 2.4 - (np.abs(v - 0.2) / 1.2) ** 2.4, 4 * edge)
    tissue = body * (0.5 + 0.2 * np.clip(1.0 - (u / bw) ** 2, 0.0, 1.0))
    mediastinum = _ramp(0.13 - np.abs(u - 0.02), edge * 4) * _ramp(0.75 - v, edge)
    spine = _ramp(0.06 - np.abs(u), edge) * (0.8 + 0.2 * np.cos(2 * np.pi * v / 0.13))

    # Lungs: D-shaped ellipses (flatter on the medial side) cut by the diaphragm domes.
    lungs = np.zeros_like(u)
    hila = []
    for side in (-1.0, 1.0):
        cx = _col(a.lung_x) * side
        ax = _col(a.lung_ax) * np.where((u - cx) * side > 0, 1.0, _col(a.lung_med))
        cy, ay = _col(a.lung_y), _col(a.lung_ay)
        inside = 1.0 - ((u - cx) / ax) ** 2 - ((v - cy) / ay) ** 2
        top = cy + ay * _col(a.diaphragm) - (_col(a.right_high) if side < 0 else 0.0)
        above = top + _col(a.dome) * ((u - cx) / _col(a.lung_ax)) ** 2 - v
        lungs = np.maximum(lungs, np.minimum(_ramp(inside, 4 * edge), _ramp(above, edge)))
        hila.append((cx - side * 0.12, cy + 0.08))
    heart = _ramp(1.0 - ((u - _col(a.heart_x)) / _col(a.heart_ax)) ** 2
                  - ((v - _col(a.lung_y) - _col(a.heart_y)) / _col(a.heart_ay)) ** 2, 4 * edge)
    lung_field = lungs * (1.0 - heart)
    depth = np.clip(1.0 - ((np.abs(u) - _col(a.lung_x)) / _col(a.lung_ax)) ** 2
                    - ((v - _col(a.lung_y)) / _col(a.lung_ay)) ** 2, 0.0, 1.0)
    air = lung_field * (0.65 + 0.35 * np.sqrt(depth))

    cage = _ramp(0.85 * bw - np.abs(u), 8 * edge) * _ramp(np.abs(u) - 0.07, edge) * _ramp(v + 0.8, 8 * edge) \
        * _ramp(_col(a.lung_y) + 0.75 * _col(a.lung_ay) - v, 8 * edge)
    phase = (v - _col(a.rib_curve) * (np.abs(u) - 0.3) ** 2) / _col(a.rib_space) - _col(a.rib_phase)
    ribs = np.clip((np.cos(2 * np.pi * phase) - 0.35) / 0.4, 0.0, 1.0)
    phase2 = (v + 0.45 * np.abs(u)) / (1.3 * _col(a.rib_space)) - _col(a.rib_phase) * 0.7
    ribs = cage * (ribs + 0.35 * np.clip((np.cos(2 * np.pi * phase2) - 0.5) / 0.4, 0.0, 1.0))
    clavicles = np.zeros_like(u)
    for side in (-1.0, 1.0):
        p0 = (np.float32(0.07 * side), _col(a.lung_y) - 0.56 + _col(a.clavicle))
        p1 = (np.float32(0.62 * side), _col(a.lung_y) - 0.72 - _col(a.clavicle))
        clavicles = np.maximum(clavicles, _ramp(0.03 - _segment_distance(u, v, p0, p1), edge))

    hilum_w = np.maximum(*[np.exp(-np.hypot(u - hx, v - hy) / 0.3) for hx, hy in hila])
    vessel_tex = np.abs(_smooth(anat_z[:, 0], 0.015))
    vessels = lung_field * hilum_w * np.exp(-vessel_tex * 2.0) * _col(a.vessels)

    lesion = _lesions(label_idx, lesion_u, lesion_z, u, v, a, hila, severity)
    atten = (tissue + 0.25 * mediastinum * body + 0.12 * heart * (1.0 - mediastinum) + 0.1 * spine * body + 0.16 * ribs
             + 0.22 * clavicles - 0.5 * air + 0.12 * vessels + lung_field * lesion)
    img = np.clip(_col(a.gain) * (atten - 0.1) + _col(a.offset), 0.0, 1.0) ** _col(a.gamma)
    grain = 0.6 * anat_z[:, 1] + 0.8 * _smooth(anat_z[:, 2], 0.01)
    return np.clip(img + _col(a.noise) * grain, 0.0, 1.0), lung_field


def _lesions(label_idx: int, lu: np.ndarray, lz: np.ndarray, u: np.ndarray, v: np.ndarray,
             a: _Anatomy, hila: list[tuple[np.ndarray, np.ndarray]], severity: float) -> np.ndarray:
    """Added attenuation inside the lungs for one class (zero for Normal)."""
    name = PHANTOM_CLASSES[label_idx]
    if name == "Normal" or severity <= 0:
        return np.zeros_like(u)
    strength = _col(severity * _lerp(lu[:, 0], 0.25, 1.0))
    if name == "COVID":
        # 3 blobs per lung: lateral half, lower two thirds, Gaussian ground glass with a mottled texture.
        glass = np.zeros_like(u)
        for k in range(6):
            side = -1.0 if k < 3 else 1.0
            cu = side * (_col(a.lung_x) + _col(a.lung_ax) * _col(_lerp(lu[:, 1 + 3 * k], 0.2, 0.8)))
            cv = _col(a.lung_y) + _col(a.lung_ay) * _col(_lerp(lu[:, 2 + 3 * k], 0.0, 0.6))
            sig = _col(_lerp(lu[:, 3 + 3 * k], 0.08, 0.14))
            glass += np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * sig * sig))
        mottle = 1.0 + 0.25 * _smooth(lz[:, 0], 0.02)
        return strength * 0.45 * np.tanh(glass) * mottle
    if name == "Viral Pneumonia":
        # Diffuse haze plus a reticular network (the zero set of band-passed noise), perihilar-weighted.
        band = _smooth(lz[:, 0], 0.012) - 0.6 * _smooth(lz[:, 1], 0.03)
        reticular = np.exp(-(band / 0.35) ** 2)
        perihilar = 0.6 + 0.4 * np.maximum(*[np.exp(-np.hypot(u - hx, v - hy) / 0.35) for hx, hy in hila])
        return strength * perihilar * (0.16 + 0.14 * reticular)
    # Lung_Opacity: one dense lobulated consolidation in one lung, soft-edged, slightly textured.
    side = _col(np.where(lu[:, 1] < 0.5, -1.0, 1.0))
    cu = side * (_col(a.lung_x) + _col(a.lung_ax) * _col(_lerp(lu[:, 2], -0.35, 0.5)))
    cv = _col(a.lung_y) + _col(a.lung_ay) * _col(_lerp(lu[:, 3], -0.45, 0.55))
    r0 = _col(_lerp(lu[:, 4], 0.08, 0.15))
    theta = np.arctan2(v - cv, u - cu)
    radius = r0 * (1.0 + 0.2 * np.cos(3 * theta + _col(lu[:, 5] * 2 * np.pi))
                   + 0.1 * np.cos(5 * theta + _col(lu[:, 6] * 2 * np.pi)))
    dense = _ramp(radius - np.hypot(u - cu, v - cv), 0.08)
    return strength * 0.6 * dense * (1.0 + 0.1 * _smooth(lz[:, 0], 0.02))


def _streams(label_idx: int, seed: int, anatomy_seed: int | None) -> list[np.random.Generator]:
    """[anatomy parameters, anatomy noise, lesion parameters, lesion noise] generators; without
    ``anatomy_seed`` every class gets its own patients. Separate streams keep outputs prefix-stable."""
    anatomy_key = [seed, label_idx, _ANATOMY] if anatomy_seed is None else [anatomy_seed, len(PHANTOM_CLASSES),
                                                                          _ANATOMY]
    anatomy, lesion = np.random.SeedSequence(anatomy_key), np.random.SeedSequence([seed, label_idx, _LESION])
    return [np.random.default_rng(s) for s in anatomy.spawn(2) + lesion.spawn(2)]


def _chunks(label: str, n: int, size: int, seed: int, severity: float,
            anatomy_seed: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render ``n`` phantoms in chunks of at most ``_CHUNK``: yields (images uint8, masks uint8)."""
    label_idx = match_class(label, PHANTOM_CLASSES)
    if n < 0:
        raise CxraugError(f"number of phantoms must be >= 0, got {n}")
    if not 8 <= size <= 1024:
        raise CxraugError(f"phantom size must be between 8 and 1024 px, got {size}")
    if severity < 0:
        raise CxraugError(f"phantom severity must be >= 0, got {severity}")
    factor = -(-_MIN_RENDER // size)  # ceil: render at size * factor >= 64 and block-average down
    res = size * factor
    anat_params, anat_noise, lesion_params, lesion_noise = _streams(label_idx, seed, anatomy_seed)
    anat_u = anat_params.random((n, _Anatomy.N_PARAMS))
    lesion_u = lesion_params.random((n, _N_LESION_PARAMS))
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        anat_z = anat_noise.standard_normal((stop - start, 3, res, res), dtype=np.float32)
        lesion_z = lesion_noise.standard_normal((stop - start, 2, res, res), dtype=np.float32)
        img, lung = _render(label_idx, anat_u[start:stop], lesion_u[start:stop], anat_z, lesion_z, severity)
        if factor > 1:
            img = img.reshape(-1, size, factor, size, factor).mean(axis=(2, 4))
            lung = lung.reshape(-1, size, factor, size, factor).mean(axis=(2, 4))
        yield np.round(img * 255.0).astype(np.uint8), np.where(lung > 0.5, 255, 0).astype(np.uint8)


def draw_phantoms(label: str, n: int, size: int = 64, seed: int = 0, severity: float = DEFAULT_SEVERITY,
                  anatomy_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` phantoms of class ``label``: (images uint8 (n, size, size), lung masks uint8 {0, 255}).

    Synthetic test data, not medical data. Deterministic in (label, n, size, seed, severity, anatomy_seed);
    the same ``anatomy_seed`` gives the same patients (pose, anatomy, exposure, noise) for every class.
    """
    images = np.empty((n, size, size), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    start = 0
    for img, mask in _chunks(label, n, size, seed, severity, anatomy_seed):
        images[start:start + len(img)], masks[start:start + len(img)] = img, mask
        start += len(img)
    return images, masks


def draw_paired(labels: Iterable[str], n: int, size: int = 64, seed: int = 0,
                severity: float = DEFAULT_SEVERITY) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The same ``n`` patients rendered once per class: ``{label: (images, masks)}``; masks are identical
    across labels and images differ only inside the lungs. Synthetic test data, not medical data."""
    return {label: draw_phantoms(label, n, size, seed, severity, anatomy_seed=seed) for label in labels}


def _counts(n_per_class: int | Mapping[str, int], classes: Iterable[str] | None) -> dict[str, int]:
    """Canonical class name -> count, for an int (every selected class) or a name -> count mapping."""
    chosen = [PHANTOM_CLASSES[match_class(c, PHANTOM_CLASSES)] for c in (classes or PHANTOM_CLASSES)]
    if isinstance(n_per_class, Mapping):
        given = {PHANTOM_CLASSES[match_class(k, PHANTOM_CLASSES)]: int(v) for k, v in n_per_class.items()}
        extra = sorted(set(given) - set(chosen))
        if extra:
            raise CxraugError(f"counts given for classes not selected: {', '.join(extra)}")
        counts = {c: given.get(c, 0) for c in chosen}
    else:
        counts = {c: int(n_per_class) for c in chosen}
    if any(v < 0 for v in counts.values()) or sum(counts.values()) == 0:
        raise CxraugError(f"phantom counts must be >= 0 and not all zero, got {counts}")
    return counts


def parse_counts(text: str) -> int | dict[str, int]:
    """``"200"`` -> 200; ``"COVID=50,Normal=200"`` -> {"COVID": 50, "Normal": 200} (the CLI's --n-per-class)."""
    try:
        if "=" not in text:
            return int(text)
        return {k.strip(): int(v) for k, v in (item.split("=", 1) for item in text.split(",") if item.strip())}
    except ValueError:
        raise CxraugError(f"--n-per-class must be a number or CLASS=N,CLASS=N, got {text!r}") from None


_README = """Synthetic chest-radiograph PHANTOMS written by cxraug {version} (phantom renderer v{renderer}).

THIS IS SYNTHETIC TEST DATA, NOT MEDICAL DATA. The images are drawn from geometric shapes and noise;
they depict no patient and must never be used to train or evaluate anything meant for clinical use.

Layout: Kaggle "COVID-19 Radiography Database" style, <Class>/images/<Class>-<k>.png and
<Class>/masks/<Class>-<k>.png (lung masks, 0/255). Settings: size {size} px, seed {seed}, severity {severity}.
Counts: {counts}.
Rewrite it with: cxraug data phantom --out DIR --n-per-class N --size {size} --seed {seed} --severity {severity}
"""


def write_phantom_dataset(out: str | os.PathLike[str], n_per_class: int | Mapping[str, int], size: int = 256,
                          seed: int = 0, severity: float = DEFAULT_SEVERITY,
                          classes: Iterable[str] | None = None) -> Path:
    """Write phantoms in the Kaggle layout ``OUT/<Class>/{images,masks}/<Class>-<k>.png`` plus README.txt
    and phantom.json; atomic (built in a temporary folder beside ``out``, then renamed). Returns ``out``.

    ``n_per_class`` is one count for every class or ``{class: count}`` (imbalanced; missing classes get 0 and
    are not written). ``out`` must not exist or be an empty folder.
    """
    from cxraug import __version__

    out = Path(out)
    counts = _counts(n_per_class, classes)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CxraugError(f"{out} already exists and is not an empty folder; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for cls, n in counts.items():
            if n == 0:
                continue
            (tmp / cls / "images").mkdir(parents=True)
            (tmp / cls / "masks").mkdir(parents=True)
            k = 0
            for images, masks in track(_chunks(cls, n, size, seed, severity, None), f"phantoms {cls}",
                                       total=-(-n // _CHUNK)):
                for image, mask in zip(images, masks):
                    k += 1
                    cv2.imwrite(str(tmp / cls / "images" / f"{cls}-{k}.png"), image)
                    cv2.imwrite(str(tmp / cls / "masks" / f"{cls}-{k}.png"), mask)
        settings = {"data": "phantom", "renderer": PHANTOM_VERSION, "size": size, "seed": seed,
                    "severity": severity, "counts": counts}
        (tmp / "phantom.json").write_text(json.dumps(settings, indent=2) + "\n")
        (tmp / "README.txt").write_text(_README.format(version=__version__, renderer=PHANTOM_VERSION, size=size,
                                                       seed=seed, severity=severity, counts=counts))
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished folder onto ``out``; if a concurrent writer finished first, keep theirs."""
    try:
        os.replace(tmp, out)
    except OSError:
        if not (out / "phantom.json").is_file():
            raise


def cache_dir() -> Path:
    """``$CXRAUG_CACHE`` or ``~/.cache/cxraug``."""
    return Path(os.environ.get("CXRAUG_CACHE") or Path.home() / ".cache" / "cxraug")


def phantom_root(n_per_class: int = 250, size: int = 128, seed: int = 0,
                 severity: float = DEFAULT_SEVERITY) -> Path:
    """The default phantom dataset (used when a command gets no ``--data``), written once under
    :func:`cache_dir` and reused. Synthetic test data, not medical data."""
    root = cache_dir() / "phantom" / f"v{PHANTOM_VERSION}-n{n_per_class}-s{size}-seed{seed}-sev{severity:g}"
    if not (root / "phantom.json").is_file():
        write_phantom_dataset(root, n_per_class, size=size, seed=seed, severity=severity)
    return root
