"""Generic image-folder trees: `ROOT/<class>/*` (one `train` split) or `ROOT/<split>/<class>/*`.

Class folder names are matched to the canonical classes by common spellings (angry, happy, sad, surprised, ...) and by
`label_map=folder1:ours1,folder2:ours2` (`ours` may be `drop`), which comes first: it need only name the others.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UserInputError
from ..schema import (
    SPLIT_ALIASES,
    Options,
    RawSource,
    ReadContext,
    finish,
    list_dirs,
    list_images,
    make_split,
    name_to_id,
    parse_label_map,
    require_dir,
    unknown_name_hint,
)

LAYOUT = "imagefolder: ROOT/<class>/<image> or ROOT/{train,validation,test}/<class>/<image>"


def read_imagefolder(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Read an image-folder tree. Option `label_map` maps folder names onto ours."""
    map_text = options.text("label_map")
    options.done()
    label_map = parse_label_map(map_text, f"dataset spec {options.spec.text!r}") if map_text else None
    require_dir(path, "imagefolder", LAYOUT)
    subdirs = list_dirs(path)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        others = [d for d in subdirs if d not in split_dirs]
        if others:
            raise UserInputError(
                f"imagefolder: {others[0]} is not a split folder next to {split_dirs[0].name}/ "
                f"(expected layout: {LAYOUT})"
            )
        layout = [(SPLIT_ALIASES[d.name.lower()], d) for d in split_dirs]
    else:
        layout = [("train", path)]
    splits, dropped = {}, {}
    for split, split_dir in layout:
        cols: dict[str, list] = {"image": [], "label": [], "id": []}
        counts: dict[str, int] = {}
        for class_dir in list_dirs(split_dir):
            try:
                label = name_to_id(class_dir.name, label_map)
            except KeyError:
                raise UserInputError(
                    f"imagefolder: unknown class folder {class_dir}: {unknown_name_hint(label_map)}"
                ) from None
            images = list_images(class_dir)
            if label is None:
                counts[class_dir.name] = counts.get(class_dir.name, 0) + len(images)
                continue
            for image in images:
                cols["image"].append(str(image))
                cols["label"].append(label)
                cols["id"].append(image.relative_to(path).as_posix())
        if not cols["id"]:
            raise UserInputError(f"imagefolder: no images found in class folders of {split_dir} (layout: {LAYOUT})")
        splits[split] = make_split(cols, None, f"imagefolder {split}", source=path.name or "imagefolder")
        dropped[split] = counts
    return RawSource(name="imagefolder", splits=finish(splits), dropped=dropped)
