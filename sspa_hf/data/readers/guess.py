"""Recognise a raw dataset layout from its files, to suggest the FORMAT a bare path lacks."""

from __future__ import annotations

from pathlib import Path

from .caer_s import CAER_S_FOLDERS
from .fer2013 import FER2013_FOLDERS


def guess_format(path: Path) -> str | None:
    """The spec FORMAT whose layout `path` looks like, or None."""
    if not path.is_dir():
        return "fer2013" if path.name.endswith(".csv") else None
    if (path / "EmoLabel").is_dir() or (path / "basic" / "EmoLabel").is_dir():
        return "rafdb"
    if (path / "Manually_Annotated_file_lists").is_dir() or (path / "train_set" / "annotations").is_dir():
        return "affectnet"
    if (path / "fer2013new.csv").is_file():
        return "ferplus"
    if (path / "fer2013.csv").is_file():
        return "fer2013"
    if (path / "train.parquet").is_file():
        return "fer2013_ferplus"
    train = path / "train"
    if train.is_dir():
        names = {p.name for p in train.iterdir() if p.is_dir()}
        if names and names <= set(CAER_S_FOLDERS):
            return "caer_s"
        if names and names <= set(FER2013_FOLDERS):
            return "fer2013"
    if any(p.is_dir() for p in path.iterdir()):
        return "imagefolder"
    return None
