"""RAF-DB basic: `EmoLabel/list_patition_label.txt` + `Image/aligned/<stem>_aligned.jpg`, split by file-name prefix."""

from __future__ import annotations

from pathlib import Path

from ...errors import UserInputError
from ..schema import Options, RawSource, ReadContext, finish, label_ids, make_split, require_dir, require_file

#: RAF-DB basic labels (1..7) onto the canonical names.
RAFDB_LABELS: dict[int, str] = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
}
LABEL_FILE = "EmoLabel/list_patition_label.txt"
LAYOUT = (
    "RAF-DB basic: ROOT/EmoLabel/list_patition_label.txt ('train_00001.jpg 5' lines) and "
    "ROOT/Image/aligned/train_00001_aligned.jpg (or ROOT/Image/original/train_00001.jpg with aligned=0)"
)
_SPLITS = {"train": "train", "test": "test"}


def find_root(path: Path) -> Path:
    """The folder holding EmoLabel/: PATH itself or PATH/basic (the archive's top folder)."""
    for candidate in (path, path / "basic"):
        if (candidate / LABEL_FILE).is_file():
            return candidate
    require_dir(path, "rafdb", LAYOUT)
    require_file(path / LABEL_FILE, "rafdb", LAYOUT)
    return path


def read_rafdb(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Read RAF-DB basic; option `aligned` (default 1) picks Image/aligned over Image/original."""
    aligned = options.flag("aligned", True)
    options.done()
    root = find_root(path)
    label_file = root / LABEL_FILE
    image_dir = require_dir(root / "Image" / ("aligned" if aligned else "original"), "rafdb", LAYOUT)
    ids = label_ids(RAFDB_LABELS)
    columns: dict[str, dict[str, list]] = {}
    with label_file.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            where = f"{label_file}:{line_no}"
            if len(parts) != 2:
                raise UserInputError(f"{where}: expected 'train_00001.jpg 5', got {line.strip()!r}")
            name, code = parts
            if code not in {str(k) for k in RAFDB_LABELS}:
                raise UserInputError(f"{where}: unknown RAF-DB label {code!r} for {name} (expected 1..7)")
            split = _SPLITS.get(name.split("_", 1)[0])
            if split is None:
                raise UserInputError(f"{where}: file name {name!r} does not start with train_ or test_")
            stem = Path(name).stem
            image = image_dir / (f"{stem}_aligned.jpg" if aligned else name)
            if not image.is_file():
                ctx.bad_image(image, "missing", f"{where} lists {name} but {image} does not exist (layout: {LAYOUT})")
                continue
            cols = columns.setdefault(split, {"image": [], "label": [], "id": []})
            cols["image"].append(str(image))
            cols["label"].append(ids[int(code)])
            cols["id"].append(name)
    if not columns:
        raise UserInputError(f"{label_file}: no labelled images listed (expected layout: {LAYOUT})")
    splits = {}
    for split, cols in columns.items():
        splits[split] = make_split(cols, None, f"rafdb {split}", source="rafdb")
    return RawSource(name="rafdb", splits=finish(splits), meta_files=[label_file], bad=list(ctx.bad))
