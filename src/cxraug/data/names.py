"""Class-name matching: ``Viral Pneumonia`` = ``viral_pneumonia`` = ``VIRAL-PNEUMONIA``."""

from __future__ import annotations

import re

from cxraug.errors import CxraugError


def normalize(name: str) -> str:
    """Lower case with spaces, hyphens and underscores removed."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def match_class(name: str, classes: list[str]) -> int:
    """Index of ``name`` in ``classes`` ignoring case, spaces, hyphens and underscores."""
    key = normalize(name)
    for i, c in enumerate(classes):
        if normalize(c) == key:
            return i
    raise CxraugError(f"unknown class {name!r}; classes are: {', '.join(classes)}")
