"""Where a label came from, and which source wins when a photo has several.

The one home of the label sources: the store, the CLI choices, training's
source lists and the labelling app all import them from here. A ``LabelSource``
is a ``str`` (``LabelSource.MANUAL == "manual"``), so stored rows, CSV files and
command-line input keep their plain strings.
"""
from __future__ import annotations

import enum


class LabelSource(enum.StrEnum):
    """Where a label came from. The store's sources are ``SOURCES``, in priority order."""
    MANUAL = "manual"           # a person said so (the labelling app)
    IMPORTED = "imported"       # from a CSV or a folder-per-class tree
    PROPAGATED = "propagated"   # lent by nearest labelled neighbours
    PREDICTED = "predicted"     # a model's suggestion (prelabel)
    TEACHER = "teacher"         # never stored: the origin of a training photo a teacher model labelled (distill)


# the sources the store keeps, highest priority first: manual > imported > propagated > predicted
SOURCES: tuple[LabelSource, ...] = (LabelSource.MANUAL, LabelSource.IMPORTED, LabelSource.PROPAGATED,
                                    LabelSource.PREDICTED)
SOURCE_PRIORITY: dict[str, int] = {s: i for i, s in enumerate(SOURCES)}  # lower wins
HUMAN_SOURCES: tuple[LabelSource, ...] = (LabelSource.MANUAL, LabelSource.IMPORTED)   # labels a person gave
