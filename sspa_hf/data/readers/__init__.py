"""The dataset formats: one module per format, registered in the one table `FORMATS`.

A reader turns a local path (and the spec's options) into a `RawSource`: splits on the shared columns, the files
they came from, and the pixel work (`FaceWork`) still to do. It does no pixel work itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..schema import Options, RawSource, ReadContext
from .affectnet import read_affectnet
from .caer_s import read_caer_s
from .fer2013 import read_fer2013
from .fer2013_ferplus import read_fer2013_ferplus
from .ferplus import read_ferplus
from .hf import read_hf
from .imagefolder import read_imagefolder
from .rafdb import read_rafdb
from .synthetic import read_synthetic

Reader = Callable[[Path, Options, ReadContext], RawSource]


@dataclass(frozen=True)
class Format:
    """One spec FORMAT: its reader, what PATH is, and what pixel work its faces may need."""

    name: str
    read: Reader
    description: str
    face_work: bool = False  # may need cropping/detection/alignment: load_source prepares it into the cache
    can_align: bool = False  # `align=1` (sspa-prepare --align) is meaningful
    needs_path: bool = True


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("rafdb", read_rafdb, "RAF-DB basic folder (EmoLabel/, Image/aligned/)"),
        Format(
            "affectnet",
            read_affectnet,
            "AffectNet folder (Manually_Annotated_file_lists/ + images, or train_set/ + val_set/)",
            face_work=True,
            can_align=True,
        ),
        Format(
            "caer_s", read_caer_s, "CAER-S folder (train/, test/ with class folders)", face_work=True, can_align=True
        ),
        Format("fer2013", read_fer2013, "fer2013.csv, a folder holding it, or the image-folder export (train/, test/)"),
        Format("ferplus", read_ferplus, "folder holding fer2013.csv and fer2013new.csv"),
        Format(
            "fer2013_ferplus",
            read_fer2013_ferplus,
            "parquet folder (train.parquet, validation.parquet[, test.parquet])",
        ),
        Format("imagefolder", read_imagefolder, "folder of class folders, or of split folders of class folders"),
        Format("hf", read_hf, "a datasets hub id or local dataset folder"),
        Format(
            "synthetic",
            read_synthetic,
            "nothing (built-in generated faces): synthetic:?role=auxiliary&n=800",
            needs_path=False,
        ),
    )
}


def format_list() -> str:
    """The format names, comma-separated, for messages."""
    return ", ".join(FORMATS)
