"""DICOM decoding: modality LUT, window / VOI LUT, signed pixels, MONOCHROME1, compressed syntaxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from data_helpers import write_dicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, RLELossless

from cxraug.data.decode import Decoded, SkippedImage, decode_file


def _ramp(dtype: type = np.uint16, lo: int = 0, hi: int = 4095, side: int = 16) -> np.ndarray:
    return np.linspace(lo, hi, side * side).round().astype(dtype).reshape(side, side)


def _pixels(path: Path) -> Decoded:
    out = decode_file(path)
    assert isinstance(out, Decoded), out
    return out


def test_monochrome2_without_window_is_min_max_scaled(tmp_path: Path) -> None:
    out = _pixels(write_dicom(tmp_path / "a.dcm", _ramp(lo=100, hi=1100)))
    assert out.mode == "DICOM MONOCHROME2"
    assert out.pixels[0, 0] == 0 and out.pixels[-1, -1] == 255 and np.all(np.diff(out.pixels.ravel().astype(int)) >= 0)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    m2 = _pixels(write_dicom(tmp_path / "m2.dcm", _ramp())).pixels
    m1 = _pixels(write_dicom(tmp_path / "m1.dcm", _ramp(), photometric="MONOCHROME1")).pixels
    assert np.array_equal(m1, 255 - m2)
    assert m1[0, 0] == 255 and m1[-1, -1] == 0


def test_rescale_and_window_are_applied(tmp_path: Path) -> None:
    # stored 0..4095, slope 2 intercept -1024 -> HU -1024..7166; window 0 +- 500 -> clipped outside
    stored = _ramp()
    path = write_dicom(tmp_path / "w.dcm", stored, RescaleSlope=2, RescaleIntercept=-1024,
                       WindowCenter=0, WindowWidth=1000, VOILUTFunction="LINEAR_EXACT")
    out = _pixels(path).pixels.astype(int)
    hu = stored.astype(float) * 2 - 1024
    expected = np.clip((hu + 500) / 1000, 0, 1) * 255
    assert np.abs(out - expected).max() <= 1
    assert (out == 0).sum() > 0 and (out == 255).sum() > 0  # the window clips both ends


def test_signed_pixels(tmp_path: Path) -> None:
    stored = _ramp(np.int16, -2000, 2000)
    out = _pixels(write_dicom(tmp_path / "s.dcm", stored, signed=True)).pixels
    assert out[0, 0] == 0 and out[-1, -1] == 255  # -2000 is darkest, not wrapped to 63536
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)


def test_voi_lut_sequence(tmp_path: Path) -> None:
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 8])  # LUT Descriptor: 4096 entries from 0, 8-bit output
    item.add_new(0x00283006, "US", [min(255, v // 8) for v in range(4096)])  # LUT Data, saturates at 2040
    path = write_dicom(tmp_path / "lut.dcm", _ramp(), VOILUTSequence=Sequence([item]))
    out = _pixels(path).pixels.astype(int)
    expected = np.minimum(255, _ramp().astype(int) // 8)
    assert np.abs(out - expected).max() <= 1


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000"])
def test_compressed_transfer_syntaxes(tmp_path: Path, syntax: pydicom.uid.UID) -> None:
    stored = _ramp(lo=0, hi=3000, side=64)  # OpenJPEG needs >= 32 px for its default levels
    path = write_dicom(tmp_path / "c.dcm", stored)
    plain = _pixels(path).pixels
    ds = pydicom.dcmread(path)
    ds.compress(syntax, stored)
    ds.save_as(tmp_path / "compressed.dcm")
    assert pydicom.dcmread(tmp_path / "compressed.dcm").file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(_pixels(tmp_path / "compressed.dcm").pixels, plain)


def test_non_dicom_and_pixel_less_dicom_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "fake.dcm").write_bytes(b"hello" * 100)
    out = decode_file(tmp_path / "fake.dcm")
    assert isinstance(out, SkippedImage) and "DICOM" in out.reason
    path = write_dicom(tmp_path / "nopix.dcm", _ramp())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    out = decode_file(path)
    assert isinstance(out, SkippedImage) and "no pixel data" in out.reason
