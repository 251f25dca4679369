"""AffectNet, in both release layouts, with the face box (and landmarks for alignment) kept for `sspa-prepare`.

- Original release: `Manually_Annotated_file_lists/{training,validation}.csv` + `Manually_Annotated_Images/`.
  The faces are cropped by their CSV box (and optionally aligned on the 68 landmarks' eye centres) once.
- Newer release: `{train_set,val_set}/images/<id>.jpg` + `annotations/<id>_{exp,val,aro,lnd}.npy` (faces already
  cropped).

AffectNet has no public test set: its validation split is exposed as both `validation` and `test`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from datasets import List, Value
from tqdm.auto import tqdm

from ...errors import UserInputError
from ..schema import (
    FaceWork,
    Options,
    RawSource,
    ReadContext,
    finish,
    label_ids,
    list_images,
    make_split,
    require_dir,
    require_file,
)

#: AffectNet expression codes onto the canonical names; the codes in AFFECTNET_DROPPED are left out (and counted).
AFFECTNET_LABELS: dict[int, str] = {
    0: "neutral",
    1: "happiness",
    2: "sadness",
    3: "surprise",
    4: "fear",
    5: "disgust",
    6: "anger",
}
AFFECTNET_DROPPED: dict[int, str] = {7: "contempt", 8: "none", 9: "uncertain", 10: "no-face"}
_IDS = label_ids(AFFECTNET_LABELS)
CSV_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
LISTS_DIR = "Manually_Annotated_file_lists"
IMAGE_DIRS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
LAYOUT = (
    "AffectNet: ROOT/Manually_Annotated_file_lists/{training,validation}.csv (columns "
    + ",".join(CSV_COLUMNS)
    + ") with images under ROOT/Manually_Annotated_Images/<subDirectory_filePath>; "
    "or ROOT/{train_set,val_set}/images/<id>.jpg with annotations/<id>_exp.npy"
)
_CSV_SPLITS = {"training.csv": "train", "validation.csv": "validation"}
_NEW_SPLITS = {"train_set": "train", "val_set": "validation"}


def _extra_features(align: bool) -> dict:
    extra = {"valence": Value("float32"), "arousal": Value("float32")}
    if align:
        extra["landmarks"] = List(Value("float32"))
    return extra


def read_affectnet(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Read either AffectNet layout. Options: `align` (default 0), `images` (image root), `image_size`."""
    align = options.flag("align", False)
    image_root = options.text("images")
    options.integer("image_size", 224, minimum=0)  # used by load_source when it prepares the faces itself
    options.done()
    require_dir(path, "affectnet", LAYOUT)
    if (path / LISTS_DIR).is_dir():
        source = _read_csv_layout(path, Path(image_root) if image_root else None, align, ctx)
        source.face_work = FaceWork(crop_box=True, align=align)
    elif any((path / name).is_dir() for name in _NEW_SPLITS):
        source = _read_npy_layout(path, align, ctx)
        source.face_work = FaceWork(align=align)
    else:
        raise UserInputError(f"affectnet: neither {path / LISTS_DIR} nor {path / 'train_set'} found (layout: {LAYOUT})")
    # AffectNet's test set is not public; its validation set is the de-facto test set.
    if "validation" in source.splits and "test" not in source.splits:
        splits = dict(source.splits)
        splits["test"] = splits["validation"]
        source.splits = finish(splits)
    return source


def _image_root(root: Path, override: Path | None) -> Path:
    if override is not None:
        return require_dir(override, "affectnet images", LAYOUT)
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    raise UserInputError(f"affectnet: image folder {root / IMAGE_DIRS[0]} not found (layout: {LAYOUT})")


def _label(code: str, counts: dict[str, int], unknown: str) -> int | None:
    """Canonical id of an AffectNet expression code; None (and counted) for the codes dropped in 7-class work."""
    code = str(code).strip()
    expression = int(code) if code.lstrip("-").isdigit() else None
    if expression in AFFECTNET_DROPPED:
        reason = AFFECTNET_DROPPED[expression]
        counts[reason] = counts.get(reason, 0) + 1
        return None
    if expression not in _IDS:
        raise UserInputError(f"{unknown} (expected 0..10)")
    return _IDS[expression]


def _floats(text: str, where: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(";") if x.strip()]
    except ValueError:
        raise UserInputError(f"{where}: {what} {text[:40]!r} is not a list of numbers") from None


def _read_csv_layout(root: Path, image_override: Path | None, align: bool, ctx: ReadContext) -> RawSource:
    images = _image_root(root, image_override)
    splits, dropped, meta = {}, {}, []
    for file_name, split in _CSV_SPLITS.items():
        csv_path = root / LISTS_DIR / file_name
        if split == "validation" and not csv_path.exists():
            continue
        require_file(csv_path, "affectnet", LAYOUT)
        meta.append(csv_path)
        cols: dict[str, list] = {k: [] for k in ("image", "label", "id", "valence", "arousal", "face_box")}
        if align:
            cols["landmarks"] = []
        counts: dict[str, int] = {}
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in tqdm(reader, desc=f"affectnet {file_name}", unit=" rows", disable=None, leave=False):
                where = f"{csv_path}:{reader.line_num}"
                if reader.line_num == 1 and row and row[0] == CSV_COLUMNS[0]:
                    if tuple(row[: len(CSV_COLUMNS)]) != CSV_COLUMNS:
                        raise UserInputError(f"{where}: header {row} differs from {list(CSV_COLUMNS)}")
                    continue  # training.csv has a header; validation.csv is often shipped without one
                if not row:
                    continue
                if len(row) < len(CSV_COLUMNS):
                    raise UserInputError(f"{where}: expected {len(CSV_COLUMNS)} columns, got {len(row)}")
                rel, x, y, w, h, landmarks, code, valence, arousal = row[: len(CSV_COLUMNS)]
                label = _label(code, counts, f"{where}: unknown AffectNet expression {code!r} for {rel}")
                if label is None:
                    continue
                try:
                    box = [float(x), float(y), float(w), float(h)]
                    va = (float(valence), float(arousal))
                except ValueError:
                    raise UserInputError(f"{where}: face box or valence/arousal of {rel} is not numeric") from None
                if box[2] <= 0 or box[3] <= 0:
                    raise UserInputError(f"{where}: face box of {rel} has width/height {box[2]}x{box[3]}")
                image = images / rel
                if not image.is_file():
                    message = f"{where} lists {rel} but {image} does not exist (layout: {LAYOUT})"
                    ctx.bad_image(image, "missing", message)
                    continue
                if align:
                    points = _floats(landmarks, where, "facial_landmarks")
                    if len(points) != 136:
                        raise UserInputError(f"{where}: facial_landmarks of {rel} has {len(points)} numbers, not 136")
                    cols["landmarks"].append(points)
                cols["image"].append(str(image))
                cols["label"].append(label)
                cols["id"].append(rel)
                cols["valence"].append(va[0])
                cols["arousal"].append(va[1])
                cols["face_box"].append(box)
        extra = {**_extra_features(align), "face_box": List(Value("float32"))}
        splits[split] = make_split(cols, extra, f"affectnet {split}", source="affectnet")
        dropped[split] = counts
    return RawSource(name="affectnet", splits=finish(splits), meta_files=meta, dropped=dropped, bad=list(ctx.bad))


def _load_npy_value(path: Path) -> str:
    try:
        return str(np.load(path, allow_pickle=False).item())
    except (OSError, ValueError) as err:
        raise UserInputError(f"affectnet: cannot read annotation {path}: {err}") from None


def _npy_float(path: Path) -> float:
    value = _load_npy_value(path)
    try:
        return float(value)
    except ValueError:
        raise UserInputError(f"affectnet: annotation {path} holds {value!r}, not a number") from None


def _read_npy_layout(root: Path, align: bool, ctx: ReadContext) -> RawSource:
    splits, dropped, meta = {}, {}, []
    for folder, split in _NEW_SPLITS.items():
        if not (root / folder).is_dir():
            continue
        image_dir = require_dir(root / folder / "images", "affectnet", LAYOUT)
        ann_dir = require_dir(root / folder / "annotations", "affectnet", LAYOUT)
        cols: dict[str, list] = {k: [] for k in ("image", "label", "id", "valence", "arousal")}
        if align:
            cols["landmarks"] = []
        counts: dict[str, int] = {}
        for image in tqdm(list_images(image_dir), desc=f"affectnet {folder}", disable=None, leave=False):
            stem = image.stem
            exp_file = ann_dir / f"{stem}_exp.npy"
            if not exp_file.is_file():
                raise UserInputError(f"affectnet: {image} has no annotation {exp_file} (layout: {LAYOUT})")
            code = _load_npy_value(exp_file)
            meta.append(exp_file)
            label = _label(code, counts, f"{exp_file}: unknown AffectNet expression {code!r}")
            if label is None:
                continue
            va = []
            for suffix in ("val", "aro"):
                file = ann_dir / f"{stem}_{suffix}.npy"
                va.append(_npy_float(file) if file.is_file() else math.nan)
                meta.extend([file] if file.is_file() else [])
            if align:
                lnd_file = require_file(ann_dir / f"{stem}_lnd.npy", "affectnet landmarks (align=1)", LAYOUT)
                meta.append(lnd_file)
                points = np.load(lnd_file, allow_pickle=False).astype(np.float32).ravel()
                if points.size != 136:
                    raise UserInputError(f"{lnd_file}: {points.size} numbers, expected 136 (68 landmarks)")
                cols["landmarks"].append(points.tolist())
            cols["image"].append(str(image))
            cols["label"].append(label)
            cols["id"].append(f"{folder}/images/{image.name}")
            cols["valence"].append(va[0])
            cols["arousal"].append(va[1])
        splits[split] = make_split(cols, _extra_features(align), f"affectnet {split}", source="affectnet")
        dropped[split] = counts
    return RawSource(name="affectnet", splits=finish(splits), meta_files=meta, dropped=dropped, bad=list(ctx.bad))
