"""DICOM radiographs to 8-bit grayscale with pydicom.

Order (as a DICOM viewer shows the image): stored pixels (signed when Pixel Representation is 1) ->
modality LUT (Rescale Slope/Intercept or Modality LUT Sequence) -> VOI LUT Sequence or window
(Window Center/Width, LINEAR, LINEAR_EXACT or SIGMOID) -> 8 bit -> inverted when MONOCHROME1.
Without a VOI the real value range is min-max scaled. Compressed transfer syntaxes (JPEG 2000,
JPEG-LS, lossless JPEG, RLE) decode through pydicom's pixel handlers (pylibjpeg plug-ins). Multi-frame
files give their first frame; colour (RGB/YBR) files their luminance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut

from cxraug.data.decode import Decoded, scale_to_uint8


def _first(value: object) -> float:
    """First value of a (possibly multi-valued) DICOM number."""
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def _window(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Window Center/Width -> float in [0, 1] (DICOM PS3.3 C.11.2.1.2)."""
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / max(width, 1e-6)))
    if function == "LINEAR_EXACT":
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        width = max(width, 1.0)
        lo, hi = center - 0.5 - (width - 1.0) / 2.0, center - 0.5 + (width - 1.0) / 2.0
    return np.clip((values - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _voi_lut(values: np.ndarray, item: Dataset) -> np.ndarray:
    """VOI LUT Sequence item lookup (PS3.3 C.11.2.1.1) -> float in [0, 1]."""
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    data = item.LUTData
    lut = np.frombuffer(data, dtype="<u2") if isinstance(data, bytes) else np.asarray(data, dtype=np.int64)
    lut = lut[:entries].astype(np.float64)
    index = np.clip(np.round(values) - first, 0, len(lut) - 1).astype(np.int64)
    return np.clip(lut[index] / max(float(2**bits - 1), float(lut.max()), 1.0), 0.0, 1.0)


def _voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the VOI LUT or window (min-max scaling without either); returns uint8."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return np.round(_voi_lut(values, ds.VOILUTSequence[0]) * 255.0).astype(np.uint8)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return np.round(_window(values, ds) * 255.0).astype(np.uint8)
    return scale_to_uint8(values)


def read_dicom(path: str | Path) -> Decoded:
    """Decode one DICOM file to uint8 (H, W); raises ``ValueError`` with a clear reason when unusable."""
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise ValueError(f"not a DICOM file: {exc}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError("DICOM file has no pixel data")
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3:  # colour: pydicom returns RGB (YBR converted); use luminance
        luminance = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        if int(ds.get("BitsStored", 8)) <= 8:
            return Decoded(np.clip(np.round(luminance), 0, 255).astype(np.uint8), f"DICOM {photometric}")
        return Decoded(scale_to_uint8(luminance), f"DICOM {photometric}")
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    out = _voi(values, ds)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return Decoded(out, f"DICOM {photometric}")
