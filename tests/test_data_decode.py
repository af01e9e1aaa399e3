"""Decoding: every PIL mode to correct 8-bit grayscale, EXIF orientation, one test per bad-input kind."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from data_helpers import blob_image, save_png
from PIL import Image

from cxraug.data.decode import Decoded, SkippedImage, decode_file


def _decoded(path: Path) -> np.ndarray:
    out = decode_file(path)
    assert isinstance(out, Decoded), out
    assert out.pixels.dtype == np.uint8 and out.pixels.ndim == 2
    return out.pixels


def test_mode_l_is_unchanged(tmp_path: Path) -> None:
    img = blob_image(1, 24)
    assert np.array_equal(_decoded(save_png(tmp_path / "l.png", img)), img)


def test_mode_la_and_rgba_composite_on_black(tmp_path: Path) -> None:
    la = Image.merge("LA", [Image.new("L", (20, 20), 200), Image.new("L", (20, 20), 128)])
    la.save(tmp_path / "la.png")
    assert np.all(np.abs(_decoded(tmp_path / "la.png").astype(int) - 100) <= 1)
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:10, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = _decoded(tmp_path / "rgba.png")
    assert np.all(out[:10] == 76) and np.all(out[10:] == 0)


def test_mode_rgb_uses_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (255, 0, 0)
    rgb[:, 8:] = (0, 255, 0)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    out = _decoded(tmp_path / "rgb.png")
    assert np.all(out[:, :8] == 76) and np.all(out[:, 8:] == 150)


def test_mode_p_with_and_without_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (16, 16))
    p.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    p.paste(1, (0, 0, 8, 16))
    p.save(tmp_path / "p.png")
    out = _decoded(tmp_path / "p.png")
    assert np.all(out[:, :8] == 255) and np.all(out[:, 8:] == 0)
    p.save(tmp_path / "pt.png", transparency=1)  # white entry transparent -> black
    assert np.all(_decoded(tmp_path / "pt.png") == 0)


def test_mode_1_bilevel(tmp_path: Path) -> None:
    img = Image.fromarray(np.eye(16, dtype=np.uint8) * 255).convert("1")
    img.save(tmp_path / "one.png")
    out = _decoded(tmp_path / "one.png")
    assert set(np.unique(out)) == {0, 255} and np.array_equal(out == 255, np.eye(16, dtype=bool))


def test_16_bit_png_is_scaled_by_its_real_range(tmp_path: Path) -> None:
    values = np.array([[1000, 2000], [3000, 1000]], np.uint16).repeat(8, 0).repeat(8, 1)
    Image.fromarray(values).save(tmp_path / "i16.png")
    with Image.open(tmp_path / "i16.png") as im:
        assert im.mode.startswith("I")
    out = _decoded(tmp_path / "i16.png")
    assert out[0, 0] == 0 and out[0, 8] == 128 and out[8, 0] == 255  # not truncated at 255, not all black


def test_32_bit_int_and_float_tiffs_are_scaled(tmp_path: Path) -> None:
    ints = np.linspace(-70000, 70000, 256, dtype=np.int32).reshape(16, 16)
    Image.fromarray(ints, "I").save(tmp_path / "i.tif")
    out = _decoded(tmp_path / "i.tif")
    assert out.min() == 0 and out.max() == 255 and np.all(np.diff(out.reshape(-1).astype(int)) >= 0)
    floats = np.linspace(-1.5, 2.5, 256, dtype=np.float32).reshape(16, 16)
    Image.fromarray(floats, "F").save(tmp_path / "f.tif")
    out = _decoded(tmp_path / "f.tif")
    assert out[0, 0] == 0 and out[-1, -1] == 255 and abs(int(out[8, 0]) - 128) <= 1


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = np.zeros((16, 32), np.uint8)
    img[:, :16] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(img).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = _decoded(tmp_path / "rot.jpg")
    assert out.shape == (32, 16)
    assert out[:16].mean() > 200 and out[16:].mean() < 50  # white half now on top


def _skip_reason(path: Path) -> str:
    out = decode_file(path)
    assert isinstance(out, SkippedImage), out
    assert out.path == str(path)
    return out.reason


def test_zero_byte_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _skip_reason(tmp_path / "empty.png")


def test_non_image_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is not an image\n")
    assert "not an image" in _skip_reason(tmp_path / "notes.png")


def test_truncated_file_is_skipped(tmp_path: Path) -> None:
    data = (save_png(tmp_path / "full.png", (np.random.rand(32, 32) * 255).astype(np.uint8))).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "truncated" in _skip_reason(tmp_path / "cut.png")


def test_corrupt_file_is_skipped(tmp_path: Path) -> None:
    data = bytearray(save_png(tmp_path / "ok.png", (np.random.rand(32, 32) * 255).astype(np.uint8)).read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 10:start + 60] = b"\x00" * 50  # garbage in the compressed stream, CRC now wrong
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert "corrupt" in _skip_reason(tmp_path / "bad.png")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_decompression_bomb_is_skipped(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10^10 pixels declared
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + _chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    assert "decompression bomb" in _skip_reason(tmp_path / "bomb.png")


def test_missing_file_is_skipped(tmp_path: Path) -> None:
    assert "cannot read" in _skip_reason(tmp_path / "gone.png")


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tiff"])
def test_other_formats_decode(tmp_path: Path, ext: str) -> None:
    img = blob_image(3, 24)
    out = _decoded(save_png(tmp_path / f"x{ext}", img))
    assert np.abs(out.astype(int) - img).mean() < 3
