"""Issue 16 lever, post hoc: logit adjustment (Menon et al. 2021) on the saved evaluation predictions of runs.

Each run's `eval_predictions.parquet` holds p(j | x) for every evaluation face; the adjusted prediction is
argmax_j log p(j | x) - tau log pi_j, with pi the target training set's class prior. No training: it shows what
trading head classes for tail classes does to accuracy and macro F1 before a mode is built on it.

    python benchmarks/ferplus/posthoc_adjustment.py RUN [RUN ...] [--target FOLDER] [--taus T ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sspa_hf.labels import EXPRESSIONS
from sspa_hf.metrics import classification_metrics
from sspa_hf.run_folder import read_predictions

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with eval_predictions.parquet")
    parser.add_argument("--target", default="benchmarks/out/ferplus/target", help="the target set (save_to_disk)")
    parser.add_argument("--taus", type=float, nargs="+", default=TAUS, help="tau < 0 moves back towards the prior")
    args = parser.parse_args()
    from datasets import load_from_disk

    labels = np.asarray(load_from_disk(args.target)["train"]["label"])
    log_prior = np.log(np.bincount(labels, minlength=len(EXPRESSIONS)) / len(labels))
    print("| run | tau | accuracy | macro F1 | R disgust | R fear |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        table = read_predictions(run)
        if table is None:
            raise SystemExit(f"{run}: no eval_predictions.parquet")
        y_true = table["label"].to_numpy()
        probs = table[[f"prob/{name}" for name in EXPRESSIONS]].to_numpy()
        for tau in args.taus:
            y_pred = (np.log(np.clip(probs, 1e-12, None)) - tau * log_prior).argmax(axis=1)
            m = classification_metrics(y_true, y_pred, len(EXPRESSIONS), list(EXPRESSIONS))
            print(
                f"| {run} | {tau:g} | {100 * m['accuracy']:.2f} | {100 * m['macro_f1']:.2f} | "
                f"{100 * m['recall/disgust']:.1f} | {100 * m['recall/fear']:.1f} |"
            )


if __name__ == "__main__":
    main()
