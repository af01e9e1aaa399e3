"""Preprocessed-image cache: decode and preprocess a dataset once, load a compact ``.npz`` afterwards.

The key hashes everything the cached arrays depend on: the file list (path, size, mtime of every
image, mask and metadata/manifest CSV), the preprocessing settings, the layout, the cxraug version and
a fingerprint of the data layer itself (source code of the decoding/preprocessing modules and the
versions of Pillow, pydicom and OpenCV), so a fixed decoding bug never reuses a stale cache. Any
change rebuilds. Files are written through :func:`cxraug.io.atomic_path`: a build that is killed
leaves at most a hidden ``.tmp`` file, never a cache that loads.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import PIL
import pydicom

import cxraug
from cxraug.io import atomic_path

_CODE_MODULES = ("decode.py", "dicom.py", "layouts.py", "preprocess.py", "load.py", "cache.py")


def code_fingerprint() -> str:
    """Hash of the data layer's source and of the decoder library versions."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _CODE_MODULES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    h.update(f"{PIL.__version__}|{pydicom.__version__}|{cv2.__version__}|{np.__version__}".encode())
    return h.hexdigest()


def files_fingerprint(paths: Iterable[Path]) -> str:
    """Hash of (path, size, mtime_ns) of each existing file; missing files hash as missing."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()


def cache_key(files: Iterable[Path], settings: dict[str, Any]) -> str:
    """Key of a cache entry: file fingerprint + settings + cxraug version + data-layer fingerprint."""
    payload = {
        "files": files_fingerprint(files),
        "settings": settings,
        "cxraug": cxraug.__version__,
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: str | Path, key: str) -> Path:
    """Where the entry for ``key`` lives."""
    return Path(cache_dir) / f"data-{key[:24]}.npz"


def save_arrays(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (no object arrays) and the key atomically to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, _cache_key=np.array(key), **arrays)


def load_arrays(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` when it exists, reads cleanly and carries ``key``; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["_cache_key"]) != key:
                return None
            return {k: npz[k] for k in npz.files if k != "_cache_key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
