"""Preprocessing as in the papers, each step optional: lung-mask crop, CLAHE, resize to S x S.

Order: crop to the lung mask's bounding box plus a margin (when ``mask_crop`` and a mask exists) ->
CLAHE at that resolution (when ``clahe``) -> resize the whole crop to ``size`` x ``size`` (aspect ratio
is not kept, as in the Kaggle-derived datasets). The result is uint8 (S, S) in *preprocessed space*;
models turn it into float [-1, 1] with :func:`cxraug.data.imageset.to_unit`.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class PreprocessConfig(BaseModel):
    """Preprocessing settings (extra fields are an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(64, ge=16, le=512, description="output side S in pixels")
    mask_crop: bool = Field(False, description="crop to the lung-mask bounding box when a mask exists")
    crop_margin: float = Field(0.1, ge=0.0, le=1.0, description="margin around the mask box, fraction of its side")
    clahe: bool = Field(False, description="contrast-limited adaptive histogram equalisation")
    clahe_clip: float = Field(2.0, gt=0.0, le=100.0, description="CLAHE clip limit")
    clahe_tiles: int = Field(8, ge=1, le=64, description="CLAHE tile grid (tiles x tiles)")


def resize(image: np.ndarray, height: int, width: int, nearest: bool = False) -> np.ndarray:
    """Resize uint8 (H, W): area averaging when shrinking, bilinear when growing, nearest for masks."""
    if image.shape == (height, width):
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if height * width < image.shape[0] * image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def mask_box(mask: np.ndarray, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right) of ``mask`` resized to ``shape``, grown by ``margin``;
    None when the mask is empty."""
    mask = resize(np.asarray(mask, dtype=np.uint8), shape[0], shape[1], nearest=True)
    mask = mask >= max(1, int(mask.max()) // 2)  # 0/1 and 0/255 masks alike; JPEG noise ignored
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = round(margin * (bottom - top)), round(margin * (right - left))
    return max(0, top - dy), min(shape[0], bottom + dy), max(0, left - dx), min(shape[1], right + dx)


def apply_clahe(image: np.ndarray, clip: float, tiles: int) -> np.ndarray:
    """OpenCV CLAHE on uint8 (H, W)."""
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(image)


def preprocess(image: np.ndarray, cfg: PreprocessConfig, mask: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W) grayscale (+ optional lung mask of any size) -> uint8 (S, S) in preprocessed space."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if cfg.mask_crop and mask is not None:
        box = mask_box(mask, image.shape, cfg.crop_margin)
        if box is not None:
            top, bottom, left, right = box
            image = np.ascontiguousarray(image[top:bottom, left:right])
    if cfg.clahe:
        image = apply_clahe(image, cfg.clahe_clip, cfg.clahe_tiles)
    return resize(image, cfg.size, cfg.size)
