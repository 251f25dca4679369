"""Dataset loaders onto one 7-class label space, the joint target + auxiliary builder, and on-the-fly transforms.

- `load_source("rafdb:/data/RAF-DB/basic")` -> DatasetDict with columns image, label, source, id, reference_label.
- `prepare_source(spec, output_dir, PrepareOptions(...))` -> a cached, ready `save_to_disk` folder (`sspa-prepare`).
- `build_joint(target_train, auxiliary_train, fraction, seed, stratified)` -> the joint training set.
- `TrainAugment`, `EvalTransform`, `FERTorchDataset`, `collate_fer` -> tensors for the DataLoader.
"""

from sspa_hf.data.joint import JOINT_COLUMNS, build_joint, sample_fraction
from sspa_hf.data.prepare import PrepareOptions, PrepareResult, load_prepared, prepare_source
from sspa_hf.data.schema import BASE_COLUMNS
from sspa_hf.data.sources import load_source, read_source
from sspa_hf.data.spec import FORMATS, SourceSpec, parse_spec
from sspa_hf.data.transforms import EvalTransform, FERTorchDataset, TrainAugment, collate_fer

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
