"""Preprocessed-image cache: hit, rebuild on file/setting/version change, killed build leaves no cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from data_helpers import blob_image, class_folders, save_png

import cxraug
from cxraug.data import PreprocessConfig, load_imageset
from cxraug.data import load as load_module

CFG = PreprocessConfig(size=16)


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = load_module.decode_file

    def counting(path: str | Path):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(load_module, "decode_file", counting)
    return calls


def test_second_load_is_a_cache_hit_with_identical_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = class_folders(tmp_path / "d", {"A": 3, "B": 2})
    (root / "A" / "zero.png").write_bytes(b"")
    calls = _count_decodes(monkeypatch)
    first, skipped1 = load_imageset(root, preprocess=CFG, cache_dir=tmp_path / "cache")
    assert len(calls) == 6 and len(list((tmp_path / "cache").glob("data-*.npz"))) == 1
    second, skipped2 = load_imageset(root, preprocess=CFG, cache_dir=tmp_path / "cache", classes=["B"])
    assert len(calls) == 6  # nothing decoded again
    assert np.array_equal(second.images, first.of_class("B").images) and second.paths == first.of_class("B").paths
    assert skipped1 == skipped2 and skipped2[0]["reason"].startswith("empty")


def test_changed_file_setting_or_version_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = class_folders(tmp_path / "d", {"A": 2, "B": 2})
    cache = tmp_path / "cache"
    calls = _count_decodes(monkeypatch)
    load_imageset(root, preprocess=CFG, cache_dir=cache)
    assert len(calls) == 4
    target = root / "A" / "A_0.png"
    save_png(target, 255 - blob_image(1, 24))
    os.utime(target, ns=(1, 1_000_000_000))  # a new mtime even on coarse file systems
    changed, _ = load_imageset(root, preprocess=CFG, cache_dir=cache)
    assert len(calls) == 8
    fresh, _ = load_imageset(root, preprocess=CFG)  # no cache: decodes 4 more
    assert np.array_equal(changed.images, fresh.images)
    load_imageset(root, preprocess=PreprocessConfig(size=16, clahe=True), cache_dir=cache)
    assert len(calls) == 16
    monkeypatch.setattr(cxraug, "__version__", "999.0")
    load_imageset(root, preprocess=CFG, cache_dir=cache)
    assert len(calls) == 20
    assert len(list(cache.glob("data-*.npz"))) == 4


def test_unreadable_cache_file_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = class_folders(tmp_path / "d", {"A": 2, "B": 1})
    load_imageset(root, preprocess=CFG, cache_dir=tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("data-*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    calls = _count_decodes(monkeypatch)
    images, _ = load_imageset(root, preprocess=CFG, cache_dir=tmp_path / "cache")
    assert len(calls) == 3 and len(images) == 3


def test_killed_build_leaves_no_loadable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = class_folders(tmp_path / "d", {"A": 3, "B": 3})
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from cxraug.data import PreprocessConfig, load_imageset

        def slow_savez(f, **arrays):  # write part of the archive, then hang until killed
            f.write(b"PK\\x03\\x04" + arrays["images"].tobytes()[:64])
            f.flush()
            print("writing", flush=True)
            time.sleep(120)

        np.savez = slow_savez
        load_imageset({str(root)!r}, preprocess=PreprocessConfig(size=16), cache_dir={str(cache)!r})
    """)
    env = {**os.environ, "CXRAUG_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(cache.glob("data-*.npz")) == []  # only a hidden temporary file may remain
    calls = _count_decodes(monkeypatch)
    images, _ = load_imageset(root, preprocess=CFG, cache_dir=cache)
    assert len(calls) == 6 and len(images) == 6
    assert len(list(cache.glob("data-*.npz"))) == 1
