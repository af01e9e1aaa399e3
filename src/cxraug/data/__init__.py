"""cxraug.data: datasets in, preprocessed :class:`ImageSet` out, split by patient.

Main entry points: :func:`load_imageset` (folder or phantom -> ImageSet, skipped files),
:func:`split_patients` / :func:`load_splits` (-> :class:`Splits`), :func:`apply_regime` (training-set
regimes), :class:`PreprocessConfig`, :func:`decode_file`, :func:`inspect_dataset` (the data audit).
"""

from cxraug.data.audit import inspect_dataset, near_duplicate_groups
from cxraug.data.decode import Decoded, SkippedImage, decode_file
from cxraug.data.imageset import ImageSet, Splits, to_uint8, to_unit
from cxraug.data.layouts import LAYOUTS, discover
from cxraug.data.load import (DatasetTable, image_meta_column, load_imageset, read_dataset,
                              skipped_summary, write_skipped)
from cxraug.data.preprocess import PreprocessConfig, preprocess
from cxraug.data.splits import apply_regime, assign_splits, load_splits, split_patients

__all__ = [
    "LAYOUTS", "DatasetTable", "Decoded", "ImageSet", "PreprocessConfig", "SkippedImage", "Splits",
    "apply_regime", "assign_splits", "decode_file", "discover", "image_meta_column", "inspect_dataset",
    "load_imageset", "load_splits", "near_duplicate_groups", "preprocess", "read_dataset",
    "skipped_summary", "split_patients", "to_uint8", "to_unit", "write_skipped",
]
