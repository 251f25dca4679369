"""The one 7-class label space every dataset is mapped onto (canonical order, used everywhere)."""

from __future__ import annotations

EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
NUM_CLASSES = len(EXPRESSIONS)
ID2LABEL: dict[int, str] = dict(enumerate(EXPRESSIONS))
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}
# The paper's tail classes (Section 1): together under a quarter of RAF-DB and AffectNet.
TAIL_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "surprise")


def class_label_feature():
    """A `datasets.ClassLabel` over the canonical names, so every split shares one label feature."""
    from datasets import ClassLabel

    return ClassLabel(names=list(EXPRESSIONS))
