"""sspa-export-selection: the auxiliary data set of a finished run, cleaned to the target's standard.

sspa-export-selection runs/rafdb_affectnet10 data/affectnet10_clean
sspa-export-selection runs/rafdb_affectnet10 data/affectnet10_kept --kept_only --push_to_hub me/affectnet-rafdb-std

The run folder holds the selection (`selection.parquet`) and the data arguments it trained on (`data_args.json`),
not the images: the auxiliary set is rebuilt from those arguments (same seed, same fraction) and joined on
sample_index and id, so a data set that changed since the run is refused instead of mislabelled. A run made from
Python (`SSPATrainer`, no data_args.json) is exported the same way once its data sets are given as flags:

sspa-export-selection outputs/python data/clean --target_dataset SPEC --auxiliary_dataset SPEC [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..labels import class_label_feature
from ..run.folder import DATA_ARGS as DATA_ARGS_FILE
from ..run.folder import SELECTION_TABLE
from . import CommandParser, run_command, snake_case_flags
from .output_paths import check_output_folder

PROG = "sspa-export-selection"


def build_parser() -> CommandParser:
    """The argument parser (also renders --help)."""
    parser = CommandParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="an sspa-train output folder (selection.parquet)")
    parser.add_argument("out", metavar="OUT", help="new folder for the data set (datasets' save_to_disk)")
    parser.add_argument("--kept_only", action="store_true", help="write only the consistent (kept) samples")
    parser.add_argument("--push_to_hub", metavar="REPO_ID", default=None, help="also publish it as a Hub data set")
    data = parser.add_argument_group(
        "data sets",
        "what the run trained on, for a run made from Python (no data_args.json), or to replace what data_args.json "
        "says (a data set that moved); the samples are matched to the selection by id, so a wrong one is refused",
    )
    data.add_argument("--target_dataset", metavar="SPEC", default=None, help="the target data spec")
    data.add_argument("--auxiliary_dataset", metavar="SPEC", default=None, help="the auxiliary data spec")
    data.add_argument("--seed", type=int, default=None, help="build_joint's seed (default: the run's, else 0)")
    return parser


def read_run(run_dir: Path, given: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The run's selection table (pyarrow) and data arguments (data_args.json, with the `given` flags' values over
    it); a missing piece is a one-line error saying which flags a run made from Python needs."""
    import pyarrow.parquet as pq

    table_path, args_path = run_dir / SELECTION_TABLE, run_dir / DATA_ARGS_FILE
    if not table_path.is_file():
        raise UserInputError(f"{run_dir} is not a finished training run folder: {table_path.name} is missing")
    given = {key: value for key, value in (given or {}).items() if value is not None}
    if args_path.is_file():
        return pq.read_table(table_path), {**json.loads(args_path.read_text()), **given}
    missing = [f"--{key} SPEC" for key in ("target_dataset", "auxiliary_dataset") if key not in given]
    if missing:
        raise UserInputError(
            f"{run_dir} has no {args_path.name} (a run made from Python, not by sspa-train): pass the data sets it "
            f"trained on, {' '.join(missing)} (and --seed N if build_joint had seed N)"
        )
    return pq.read_table(table_path), {"seed": 0, **given}


def selection_columns(table: Any) -> dict[str, tuple[np.ndarray, bool]]:
    """The exported columns, each with whether it is a class: `consistent` (the final side), `score` and the verdict
    columns the run's mode wrote (`target_standard_label` after transition), as the modes declare them."""
    from ..modes import exported_columns

    return exported_columns(table)


def auxiliary_with_selection(run_dir: Path, given: dict[str, Any] | None = None) -> Any:
    """The run's auxiliary samples (a `datasets.Dataset` with images) plus the selection columns; `given`: data
    arguments from the command line (see `read_run`)."""
    table, record = read_run(run_dir, given)
    from ..training.arguments import DataArguments  # the model and data stacks: after the checks of read_run
    from ..training.build import build_train_set

    seed, expected = record.pop("seed"), record.pop("num_samples", None)
    data_args = DataArguments(**{k: v for k, v in record.items() if k in DataArguments.__dataclass_fields__})
    if not data_args.auxiliary_dataset:
        raise UserInputError(f"run {run_dir} trained without an auxiliary data set: nothing to export")
    joint = build_train_set(data_args, seed)
    if len(joint) != table.num_rows or (expected is not None and len(joint) != expected):
        raise UserInputError(
            f"the data sets of run {run_dir} now give {len(joint)} training samples, the run had {table.num_rows}: "
            "they changed since the run, so the selection cannot be matched to the images"
        )
    ids = table.column("id").to_pylist()
    if list(joint["id"]) != ids or list(joint["sample_index"]) != table.column("sample_index").to_pylist():
        raise UserInputError(f"the samples of run {run_dir} no longer match its selection table (ids differ)")
    for name, (values, is_class) in selection_columns(table).items():
        # a relabel is a class like `label`, so `hf:OUT?label_column=target_standard_label` trains on it as is
        joint = joint.add_column(name, values.tolist(), feature=class_label_feature() if is_class else None)
    auxiliary = np.flatnonzero(~np.asarray(joint["is_target"]))
    return joint.select(auxiliary).remove_columns(["is_target"])


def dataset_card(data: Any, run_dir: Path, kept_only: bool, full: Any) -> str:
    """A data set card: sizes, per-class kept share, how it was made."""
    names = full.features["label"].names
    labels, consistent = np.asarray(full["label"]), np.asarray(full["consistent"])
    rows = [
        f"| {name} | {int((labels == c).sum())} | {int(consistent[labels == c].sum())} | "
        f"{100 * consistent[labels == c].mean() if (labels == c).any() else 0:.1f} % |"
        for c, name in enumerate(names)
    ]
    return "\n".join(
        [
            "---",
            "task_categories:\n- image-classification",
            "tags:\n- facial-expression-recognition\n- sspa-jt\n- label-noise",
            "---",
            "",
            "# Auxiliary faces cleaned to the target's annotation standard",
            "",
            f"The auxiliary data set of the SSPA-JT run `{run_dir.name}`, with the side its sample selection put each "
            "face on at the end of training: `consistent` (its label agrees with the target's standard), `score` "
            "(the selection mode's margin of the given label: min over experts of p_i(y) - tau_i for the paper's "
            "rule, log q(y) - max_j log q(j) for selection_mode transition) and, where the run relabelled, "
            "`target_standard_label` (a class column: `sspa-train --auxiliary_dataset "
            '"hf:FOLDER?label_column=target_standard_label"` trains on the relabels). '
            "Made with `sspa-export-selection` (sspa-hf).",
            "",
            f"{len(data)} faces in this set ({'consistent only' if kept_only else 'all'}); "
            f"{int(consistent.sum())} of {len(full)} auxiliary faces kept ({100 * consistent.mean():.1f} %).",
            "",
            "| class | faces | kept | kept share |",
            "| --- | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )


def export(args: argparse.Namespace) -> Any:
    """Write (and optionally push) the cleaned auxiliary set; return it."""
    run_dir, out = Path(args.run_dir), Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"{out} already exists and is not an empty folder")
    check_output_folder(out, "OUT")
    if args.push_to_hub:
        from .hub import push_problem

        problem = push_problem()
        if problem:
            raise UserInputError(f"--push_to_hub: {problem}")
    given = {"target_dataset": args.target_dataset, "auxiliary_dataset": args.auxiliary_dataset, "seed": args.seed}
    full = auxiliary_with_selection(run_dir, given)
    data = full.filter(lambda kept: kept, input_columns="consistent") if args.kept_only else full
    data.save_to_disk(str(out))
    card = dataset_card(data, run_dir, args.kept_only, full)
    (out / "README.md").write_text(card)
    kept = int(np.sum(full["consistent"]))
    print(f"wrote {len(data)} auxiliary faces to {out} ({kept} of {len(full)} consistent with the target standard)")
    if args.push_to_hub:
        from huggingface_hub import DatasetCard

        data.push_to_hub(args.push_to_hub)
        DatasetCard(card).push_to_hub(args.push_to_hub, repo_type="dataset")
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}")
    return data


def main(argv: list[str] | None = None) -> int:
    """Run sspa-export-selection; returns the exit status (2 for bad input, with a one-line message)."""
    args = build_parser().parse_args(snake_case_flags(argv))
    return run_command(PROG, lambda: (export(args), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
