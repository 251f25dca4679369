"""Dataset loaders onto one 7-class label space, the joint target + auxiliary builder, and on-the-fly transforms.

Layers (each imports only those above it): `schema` (shared types and columns) -> `readers/` (one module per
format, registered in `readers.FORMATS`) -> `spec` (parse) -> `cache`/`prepare` (fingerprints, manifest,
prepared folders; no reader) -> `sources` (the entry points) -> `joint`, `augment`, `transforms` (training time).

- `load_source("rafdb:/data/RAF-DB/basic")` -> DatasetDict with columns image, label, source, id, reference_label.
- `prepare_source(spec, output_dir, PrepareOptions(...))` -> a cached, ready `save_to_disk` folder (`sspa-prepare`).
- `build_joint(target_train, auxiliary_train, fraction, seed, stratified)` -> the joint training set.
- `FERTorchDataset`, `EvalTransform`, `collate_fer` -> tensors for the DataLoader; `BatchAugment` decodes and draws
  in its workers and augments whole batches on the training device (`augment.OPERATIONS`).

The names are exported lazily (PEP 562), so that a light module (`columns`, `spec`) imports without `datasets`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .augment import OPERATIONS, BatchAugment
    from .cache import PrepareOptions
    from .joint import JOINT_COLUMNS, build_joint, sample_fraction
    from .prepare import PrepareResult
    from .readers import FORMATS
    from .saved import load_prepared
    from .schema import BASE_COLUMNS, SourceSpec
    from .sources import load_source, prepare_source, read_source
    from .spec import parse_spec
    from .transforms import EvalTransform, FERTorchDataset, collate_fer

#: Exported name -> the module (relative to this package) that defines it.
_LAZY: dict[str, str] = {
    "BatchAugment": ".augment",
    "OPERATIONS": ".augment",
    "PrepareOptions": ".cache",
    "JOINT_COLUMNS": ".joint",
    "build_joint": ".joint",
    "sample_fraction": ".joint",
    "PrepareResult": ".prepare",
    "FORMATS": ".readers",
    "load_prepared": ".saved",
    "BASE_COLUMNS": ".schema",
    "SourceSpec": ".schema",
    "load_source": ".sources",
    "prepare_source": ".sources",
    "read_source": ".sources",
    "parse_spec": ".spec",
    "EvalTransform": ".transforms",
    "FERTorchDataset": ".transforms",
    "collate_fer": ".transforms",
}

__all__ = [
    "BASE_COLUMNS",
    "FORMATS",
    "JOINT_COLUMNS",
    "OPERATIONS",
    "BatchAugment",
    "EvalTransform",
    "FERTorchDataset",
    "PrepareOptions",
    "PrepareResult",
    "SourceSpec",
    "build_joint",
    "collate_fer",
    "load_prepared",
    "load_source",
    "parse_spec",
    "prepare_source",
    "read_source",
    "sample_fraction",
]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (and keep it, so later look-ups are plain attributes)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
