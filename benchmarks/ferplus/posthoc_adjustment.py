"""Issue 16 lever, post hoc: logit adjustment (Menon et al. 2021) on the saved evaluation predictions of runs.

Each run's `eval_predictions.parquet` holds p(j | x) for every evaluation face; the adjusted prediction is
argmax_j log p(j | x) - tau log pi_j, with pi the target training set's class prior (counts + 1, as
transition_pam's `prior_weight`: a run trained with w is the w = 0 run at tau = -w). No training: it shows what
trading head classes for tail classes does to accuracy and macro F1 before a mode is built on it.

    python benchmarks/ferplus/posthoc_adjustment.py RUN [RUN ...] [--target FOLDER] [--taus T ...]
    python benchmarks/ferplus/posthoc_adjustment.py ROOT/ARM/seed* --taus T --save_as OUT/NAME  # OUT/NAME/seedS/

With --save_as (one tau) each run's adjusted predictions are written as a run folder of their own
(eval_predictions.parquet, eval_metrics.json), so that `report.py --runs OUT` compares them as an arm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sspa_hf.evaluation.metrics import classification_metrics
from sspa_hf.labels import EXPRESSIONS
from sspa_hf.modes.transition_pam import class_log_prior
from sspa_hf.run.folder import EVAL_METRICS, read_predictions, write_predictions

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with eval_predictions.parquet")
    parser.add_argument("--target", default="benchmarks/out/ferplus/target", help="the target set (save_to_disk)")
    parser.add_argument("--taus", type=float, nargs="+", default=TAUS, help="tau < 0 moves back towards the prior")
    parser.add_argument("--save_as", type=Path, help="with one tau: write OUT/NAME/<run folder name>/ per run")
    args = parser.parse_args()
    if args.save_as and len(args.taus) != 1:
        raise SystemExit("--save_as needs exactly one --taus value")
    from datasets import load_from_disk

    labels = np.asarray(load_from_disk(args.target)["train"]["label"])
    log_prior = class_log_prior(labels, len(EXPRESSIONS))  # the prior transition_pam's prior_weight uses
    print("| run | tau | accuracy | macro F1 | R disgust | R fear |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        table = read_predictions(run)
        if table is None:
            raise SystemExit(f"{run}: no eval_predictions.parquet")
        y_true = table["label"].to_numpy()
        probs = table[[f"prob/{name}" for name in EXPRESSIONS]].to_numpy()
        for tau in args.taus:
            adjusted = np.log(np.clip(probs, 1e-12, None)) - tau * log_prior
            m = classification_metrics(y_true, adjusted.argmax(axis=1), len(EXPRESSIONS), list(EXPRESSIONS))
            if args.save_as:
                out = args.save_as / run.name
                out.mkdir(parents=True, exist_ok=True)
                write_predictions(out, y_true, adjusted, list(EXPRESSIONS))
                (out / EVAL_METRICS).write_text(json.dumps({**m, "adjusted_from": str(run), "tau": tau}, indent=2))
            print(
                f"| {run} | {tau:g} | {100 * m['accuracy']:.2f} | {100 * m['macro_f1']:.2f} | "
                f"{100 * m['recall/disgust']:.1f} | {100 * m['recall/fear']:.1f} |"
            )


if __name__ == "__main__":
    main()
