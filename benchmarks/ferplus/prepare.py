"""Build the FERPlus-target / FER2013-auxiliary benchmark data sets from ../shared/data/fer2013_ferplus.

Same faces, two annotation standards: the target is labelled by the FERPlus crowd majority, the auxiliary set
(about twice its size, disjoint) by the original FER2013 annotators, and for every auxiliary face we know its
FERPlus label (`reference_label`), hence whether its auxiliary label is consistent with the target standard.

    python benchmarks/ferplus/prepare.py                       # 4,000 + 8,000, seed 0, evaluation = validation
    python benchmarks/ferplus/prepare.py --eval-file other.parquet --out benchmarks/out/ferplus-other

Writes `save_to_disk` folders that recipes name as bare paths: target (train + test), aux (FER2013 labels),
aux_agree (the auxiliary faces whose two labels agree: perfect selection), aux_oracle (all auxiliary faces
relabelled with FERPlus), and manifest.json with the counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from sspa_hf.data import load_source
from sspa_hf.labels import EXPRESSIONS

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fer2013_ferplus"


def load_rows(data: Path, eval_file: Path | None) -> DatasetDict:
    """Training rows with a FERPlus label and no pixel duplicate in the evaluation file; evaluation rows likewise."""
    if eval_file is None:
        return load_source(f"fer2013_ferplus:{data}?label=ferplus")
    with tempfile.TemporaryDirectory() as folder:  # the loader reads FOLDER/{train,validation}.parquet and dedups
        (Path(folder) / "train.parquet").symlink_to((data / "train.parquet").resolve())
        (Path(folder) / "validation.parquet").symlink_to(eval_file.resolve())
        rows = load_source(f"fer2013_ferplus:{folder}?label=ferplus")
        return DatasetDict({name: split.flatten_indices(keep_in_memory=True) for name, split in rows.items()})


def relabel(split: Dataset, labels: np.ndarray, reference: np.ndarray, source: str) -> Dataset:
    """The same faces under another label column (and the other standard as reference)."""
    features = split.features.copy()
    split = split.remove_columns(["label", "reference_label", "source"])
    split = split.add_column("label", labels.tolist(), feature=features["label"])
    split = split.add_column("reference_label", reference.tolist(), feature=features["reference_label"])
    return split.add_column("source", [source] * len(split), feature=features["source"])


def histogram(labels: np.ndarray) -> dict[str, int]:
    return {name: int(count) for name, count in zip(EXPRESSIONS, np.bincount(labels, minlength=7), strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the fer2013_ferplus parquet folder")
    parser.add_argument("--eval-file", type=Path, help="evaluate on this parquet file (same schema) instead")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/ferplus"))
    parser.add_argument("--n-target", type=int, default=4000)
    parser.add_argument("--n-aux", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the target/auxiliary draw")
    args = parser.parse_args()

    rows = load_rows(args.data, args.eval_file)
    train, evaluation = rows["train"], rows["validation"]
    if args.n_target + args.n_aux > len(train):
        parser.error(f"{args.n_target} + {args.n_aux} faces asked, {len(train)} usable training rows")
    order = np.random.default_rng(args.seed).permutation(len(train))
    target_rows, aux_rows = np.sort(order[: args.n_target]), np.sort(order[args.n_target : args.n_target + args.n_aux])
    target = train.select(target_rows)
    target = relabel(target, np.asarray(target["ferplus_label"]), np.asarray(target["fer2013_label"]), "ferplus")
    aux_faces = train.select(aux_rows)
    fer2013, ferplus = np.asarray(aux_faces["fer2013_label"]), np.asarray(aux_faces["ferplus_label"])
    aux = relabel(aux_faces, fer2013, ferplus, "fer2013")
    agree = np.flatnonzero(fer2013 == ferplus)
    sets = {
        "target": DatasetDict({"train": target, "test": evaluation}),
        "aux": DatasetDict({"train": aux}),
        "aux_agree": DatasetDict({"train": aux.select(agree)}),
        "aux_oracle": DatasetDict({"train": relabel(aux_faces, ferplus, ferplus, "fer2013_oracle")}),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in sets.items():
        data.save_to_disk(str(args.out / name))
    consistent = fer2013 == ferplus
    manifest = {
        "source": str(args.data),
        "eval_file": str(args.eval_file or args.data / "validation.parquet"),
        "seed": args.seed,
        "usable_training_rows": len(train),
        "target": {"n": len(target), "ferplus_labels": histogram(np.asarray(target["label"]))},
        "auxiliary": {
            "n": len(aux),
            "fer2013_labels": histogram(fer2013),
            "consistent": int(consistent.sum()),
            "consistent_rate": float(consistent.mean()),
            "consistent_rate_per_fer2013_class": {
                name: float(consistent[fer2013 == c].mean()) if (fer2013 == c).any() else None
                for c, name in enumerate(EXPRESSIONS)
            },
        },
        "evaluation": {"n": len(evaluation), "ferplus_labels": histogram(np.asarray(evaluation["label"]))},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
