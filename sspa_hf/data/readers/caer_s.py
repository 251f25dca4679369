"""CAER-S: `{train,test}/<Class>/*.png` video frames; faces detected (and optionally aligned) once by `sspa-prepare`.

The paper trains on detected, aligned faces, not whole TV frames, so by default the frames are marked for face
detection (`faces=detect`, with `detector=haar|dlib`, Haar by default); a tree whose images are already face crops
is read as is with `faces=cropped`.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserInputError
from ..faces import DEFAULT_DETECTOR, DETECTORS
from ..schema import (
    SPLIT_ALIASES,
    FaceWork,
    Options,
    RawSource,
    ReadContext,
    finish,
    label_ids,
    list_dirs,
    list_images,
    make_split,
    require_dir,
)

#: CAER-S class folders onto the canonical names (folder names matched case-insensitively).
CAER_S_FOLDERS: dict[str, str] = {
    "Anger": "anger",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happy": "happiness",
    "Neutral": "neutral",
    "Sad": "sadness",
    "Surprise": "surprise",
}
LAYOUT = "CAER-S: ROOT/{train,test}/{" + ",".join(CAER_S_FOLDERS) + "}/<frame>.png"


def read_caer_s(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Read CAER-S. Options: `faces=detect|cropped`, `detector=haar|dlib`, `align` (detected eyes),
    `no_face=drop|keep`, `image_size`."""
    faces = options.choice("faces", ("detect", "cropped"), "detect")
    detector = options.choice("detector", tuple(DETECTORS), DEFAULT_DETECTOR)
    align = options.flag("align", False)
    no_face = options.choice("no_face", ("drop", "keep"), "drop")
    options.integer("image_size", 224, minimum=0)  # used by load_source when it prepares the faces itself
    options.done()
    if align and faces == "cropped":
        raise UserInputError(f"dataset spec {options.spec.text!r}: align=1 needs faces=detect (it uses detected eyes)")
    if "detector" in options.spec.options and faces == "cropped":
        raise UserInputError(f"dataset spec {options.spec.text!r}: detector= needs faces=detect")
    require_dir(path, "caer_s", LAYOUT)
    ids = {name.lower(): i for name, i in label_ids(CAER_S_FOLDERS).items()}
    split_dirs = [d for d in list_dirs(path) if d.name.lower() in SPLIT_ALIASES]
    if not any(SPLIT_ALIASES[d.name.lower()] == "train" for d in split_dirs):
        require_dir(path / "train", "caer_s", LAYOUT)
    splits = {}
    for split_dir in split_dirs:
        split = SPLIT_ALIASES[split_dir.name.lower()]
        cols: dict[str, list] = {"image": [], "label": [], "id": []}
        for class_dir in list_dirs(split_dir):
            label = ids.get(class_dir.name.lower())
            if label is None:
                raise UserInputError(
                    f"caer_s: unknown class folder {class_dir} (expected one of {', '.join(CAER_S_FOLDERS)})"
                )
            for image in list_images(class_dir):
                cols["image"].append(str(image))
                cols["label"].append(label)
                cols["id"].append(image.relative_to(path).as_posix())
        splits[split] = make_split(cols, None, f"caer_s {split}", source="caer_s")
    work = FaceWork(detect=faces == "detect", align=align, no_face=no_face, detector=detector)
    return RawSource(name="caer_s", splits=finish(splits), face_work=work)
