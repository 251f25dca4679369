"""Judge trained FERPlus runs on faces no run has seen or been tuned on: the training rows the benchmark left out.

prepare.py draws 4,000 target and 8,000 auxiliary faces from FER2013's training rows; the other rows with a FERPlus
label (no pixel duplicate of a drawn face or of a validation face) are a withheld evaluation set with the target's
standard, never used for training or for choosing a setting (those were chosen on validation). Each run's saved
model is evaluated there with `sspa-eval` (the model's own processor and logits, `config.logit_adjustment`
included); the results go to OUT/ARM/seedS/ as a run folder, so `report.py --runs OUT` gives the interval tables.

    python benchmarks/ferplus/withheld.py RUNS_ROOT [--out benchmarks/out/ferplus/withheld_runs]

RUNS_ROOT holds ARM/seedS/ run folders (run.py's layout).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import load_from_disk

from sspa_hf.commands import evaluate
from sspa_hf.data.columns import read_column

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fer2013_ferplus"
PREPARED = Path("benchmarks/out/ferplus")


def write_withheld(data: Path, prepared: Path, folder: Path) -> int:
    """FOLDER/validation.parquet: the unused labelled training rows (FOLDER/train.parquet: the training file)."""
    used = set()
    for name in ("target", "aux"):
        for split in load_from_disk(str(prepared / name)).values():
            used.update(read_column(split, "pixel_sha1"))  # one batch, not `split[col]`'s row-by-row Column
    used.update(pq.read_table(data / "validation.parquet", columns=["pixel_sha1"])["pixel_sha1"].to_pylist())
    table = pq.read_table(data / "train.parquet")
    drawn = pa.array(sorted(used), type=pa.string())
    keep = pc.and_(pc.not_equal(table["ferplus_label"], -1), pc.invert(pc.is_in(table["pixel_sha1"], value_set=drawn)))
    withheld = table.filter(keep)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(withheld, folder / "validation.parquet")
    if not (folder / "train.parquet").exists():
        (folder / "train.parquet").symlink_to((data / "train.parquet").resolve())
    return withheld.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="ARM/seedS/ run folders")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--prepared", type=Path, default=PREPARED, help="prepare.py's output (the drawn faces)")
    parser.add_argument("--out", type=Path, default=PREPARED / "withheld_runs")
    args = parser.parse_args()
    folder = args.out / "_data"
    if not (folder / "validation.parquet").is_file():
        print(f"withheld faces: {write_withheld(args.data, args.prepared, folder)}")
    spec = f"fer2013_ferplus:{folder}?label=ferplus"
    for run in sorted(args.runs.glob("*/seed*")):
        out = args.out / run.parent.name / run.name
        if (out / "eval_predictions.parquet").is_file() or not (run / "model.safetensors").is_file():
            continue
        code = evaluate.main([str(run), spec, "--split", "validation", "--batch_size", "256", "--output_dir", str(out)])
        if code != 0:
            shutil.rmtree(out, ignore_errors=True)
            raise SystemExit(f"sspa-eval failed on {run}")


if __name__ == "__main__":
    main()
