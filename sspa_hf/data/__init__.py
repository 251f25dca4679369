"""Dataset loaders onto one 7-class label space, the joint target + auxiliary builder, and on-the-fly transforms.

Layers (each imports only those above it): `schema` (shared types and columns) -> `readers/` (one module per
format, registered in `readers.FORMATS`) -> `spec` (parse) -> `cache`/`prepare` (fingerprints, manifest,
prepared folders; no reader) -> `sources` (the entry points) -> `joint`, `transforms` (training time).

- `load_source("rafdb:/data/RAF-DB/basic")` -> DatasetDict with columns image, label, source, id, reference_label.
- `prepare_source(spec, output_dir, PrepareOptions(...))` -> a cached, ready `save_to_disk` folder (`sspa-prepare`).
- `build_joint(target_train, auxiliary_train, fraction, seed, stratified)` -> the joint training set.
- `TrainAugment`, `EvalTransform`, `FERTorchDataset`, `collate_fer` -> tensors for the DataLoader.
"""

from .cache import PrepareOptions
from .joint import JOINT_COLUMNS, build_joint, sample_fraction
from .prepare import PrepareResult
from .readers import FORMATS
from .saved import load_prepared
from .schema import BASE_COLUMNS, SourceSpec
from .sources import load_source, prepare_source, read_source
from .spec import parse_spec
from .transforms import EvalTransform, FERTorchDataset, TrainAugment, collate_fer

__all__ = [
    "BASE_COLUMNS",
    "FORMATS",
    "JOINT_COLUMNS",
    "EvalTransform",
    "FERTorchDataset",
    "PrepareOptions",
    "PrepareResult",
    "SourceSpec",
    "TrainAugment",
    "build_joint",
    "collate_fer",
    "load_prepared",
    "load_source",
    "parse_spec",
    "prepare_source",
    "read_source",
    "sample_fraction",
]
