"""Any `datasets` dataset (hub id, local data folder or `save_to_disk` folder) brought onto the shared columns.

Its image column becomes `image`, its label column is mapped onto the canonical classes by name (common spellings,
or `label_map=name1:ours1,...`), and `source`, `id`, `reference_label` are added when missing.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from datasets import DatasetDict

from ...errors import UserInputError, first_line
from ..saved import is_saved_dataset, load_saved, normalise
from ..schema import Options, RawSource, ReadContext, parse_label_map


def read_hf(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Load a hub id or local dataset. Options: `image_column`, `label_column`, `label_map`, `source`."""
    image_column = options.text("image_column", "image")
    label_column = options.text("label_column", "label")
    map_text = options.text("label_map")
    source_name = options.text("source")
    options.done()
    where = f"dataset spec {options.spec.text!r}"
    label_map = parse_label_map(map_text, where) if map_text else None
    local, path = path, str(path)
    meta: list[Path] = []
    if local.is_dir():
        meta = sorted(p for p in local.rglob("*") if p.is_file())
        loaded = load_saved(local) if is_saved_dataset(local) else _load_dataset(path, where)
    else:
        loaded = _load_dataset(path, where)
    name = source_name or (local.name if local.is_dir() else path.rstrip("/").split("/")[-1]) or "hf"
    splits = normalise(loaded, image_column, label_column, label_map, name, where)
    key = "" if local.is_dir() else ",".join(f"{s}:{d._fingerprint}" for s, d in loaded.items())
    return RawSource(name=name, splits=splits, meta_files=meta, content_key=key)


def _load_dataset(name: str, where: str) -> DatasetDict:
    try:
        loaded = datasets.load_dataset(name)
    except Exception as err:  # hub offline, unknown id, unsupported files: one line for the user
        raise UserInputError(f"{where}: cannot load dataset {name!r}: {first_line(err)[:300]}") from None
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
