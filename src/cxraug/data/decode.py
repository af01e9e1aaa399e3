"""Decode any image file into 8-bit grayscale, or say why it cannot be used.

Every PIL mode is handled: ``1``/``L`` as is, ``LA``/``RGBA``/transparent ``P`` composited on black,
colour modes through ``convert("L")``, 16- and 32-bit integer and float modes min-max scaled over their
real value range (never truncated). EXIF orientation is applied. DICOM files go through
:mod:`cxraug.data.dicom`. Bad files (zero bytes, not an image, truncated, corrupt, decompression bombs)
come back as :class:`SkippedImage` instead of raising.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES

_COLOUR_MODES = frozenset({"RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


@dataclass(frozen=True)
class Decoded:
    """A decoded image: uint8 (H, W) pixels and the source's mode (PIL mode or DICOM photometric)."""

    pixels: np.ndarray
    mode: str


@dataclass(frozen=True)
class SkippedImage:
    """A file that could not be used, with a one-line reason."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max scale any numeric array to uint8 over its finite value range (constant -> zeros)."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError("no finite pixel values")
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    arr = np.where(finite, arr, lo)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _composite_on_black(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = gray.astype(np.float32) * (alpha.astype(np.float32) / 255.0)
    return np.round(out).astype(np.uint8)


def pil_to_gray(img: Image.Image) -> np.ndarray:
    """Any PIL image (orientation already applied) -> uint8 (H, W) grayscale."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode == "L":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    if mode in ("LA", "La", "PA"):
        la = img.convert("LA")
        return _composite_on_black(np.asarray(la.getchannel("L")), np.asarray(la.getchannel("A")))
    if mode in ("RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        return _composite_on_black(np.asarray(rgba.convert("L")), np.asarray(rgba.getchannel("A")))
    if mode in _COLOUR_MODES:
        return np.asarray(img.convert("RGB").convert("L"), dtype=np.uint8).copy()
    if mode.startswith("I") or mode == "F":
        return scale_to_uint8(np.asarray(img))
    return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def _decode_pil(path: Path) -> Decoded:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            img = ImageOps.exif_transpose(img)
            return Decoded(pil_to_gray(img), mode)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb: {exc}"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (format not recognised)"
    text = str(exc).splitlines()[0] if str(exc) else ""
    if "truncated" in text.lower():
        return f"truncated image: {text}"
    return f"corrupt or unreadable image: {type(exc).__name__}: {text}".rstrip(": ")


def decode_file(path: str | Path) -> Decoded | SkippedImage:
    """Decode ``path`` (image or DICOM) to uint8 grayscale; never raises for bad files."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return SkippedImage(str(path), "empty file (0 bytes)")
    except OSError as exc:
        return SkippedImage(str(path), f"cannot read file: {exc.strerror or exc}")
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            from cxraug.data.dicom import read_dicom

            decoded = read_dicom(path)
        else:
            decoded = _decode_pil(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes this one file unusable, never the run
        return SkippedImage(str(path), _reason(exc))
    if decoded.pixels.ndim != 2 or min(decoded.pixels.shape) == 0:
        return SkippedImage(str(path), f"unusable pixel array of shape {decoded.pixels.shape}")
    return decoded
