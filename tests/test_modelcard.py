"""Model cards: front matter, every section from a realistic run, "not recorded" for what is missing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sspa_hf.labels import EXPRESSIONS
from sspa_hf.metrics import classification_metrics
from sspa_hf.modelcard import (
    NOT_RECORDED,
    info_from_output_dir,
    normalise_metrics,
    render_model_card,
    write_model_card,
)


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(head)


def _section(card: str, title: str) -> str:
    body = card.split(f"\n## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def _selection_table(path) -> pd.DataFrame:
    """20 target rows, then auxiliary rows with known counts: class c has c + 2 auxiliary samples, c + 1 clean."""
    rows = [{"label": c % 7, "is_target": True, "clean": True, "reference_label": c % 7} for c in range(20)]
    for c in range(7):
        for j in range(c + 2):
            clean = j < c + 1
            consistent = j != 0  # the first of each class disagrees with its reference label
            reference = c if consistent else (c + 1) % 7
            rows.append({"label": c, "is_target": False, "clean": clean, "reference_label": reference})
    frame = pd.DataFrame(rows)
    frame.insert(0, "sample_index", np.arange(len(frame)))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return frame


def _info(tmp_path, prefixed: bool = True) -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    p = np.where(rng.random(300) < 0.8, y, rng.integers(0, 7, 300))
    metrics = classification_metrics(y, p)
    metrics.pop("confusion_matrix")
    history = [
        {"epoch": 0.0, "selection/aux_clean_ratio": 1.0, "selection/precision": 0.5},
        {
            "epoch": 1.0,
            "selection/aux_clean_ratio": 0.8,
            **{f"pairing/created/class_{c}": float(10 * c) for c in range(7)},
        },
    ]
    _selection_table(tmp_path / "selection.parquet")
    return {
        "repo_id": "someone/sspa-rafdb-affectnet",
        "backbone": "arm",
        "num_experts": 3,
        "image_size": 224,
        "target_dataset": "RAF-DB",
        "auxiliary_dataset": "AffectNet",
        "auxiliary_fraction": 0.4,
        "datasets": ["raf-db", "affectnet"],
        "hyperparameters": {
            "learning_rate": 0.001,
            "num_train_epochs": 60,
            "selection_epochs": 40,
            "ema_momentum": 0.95,
        },
        "metrics": {f"eval_{k}" if prefixed else k: v for k, v in metrics.items()} | {"eval_loss": 0.7},
        "selection_table_path": str(tmp_path / "selection.parquet"),
        "history": history,
    }


def test_card_of_a_realistic_run_has_front_matter_and_every_section(tmp_path):
    info = _info(tmp_path)
    card = render_model_card(info)
    meta = _front_matter(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-classification"
    assert meta["tags"] == ["sspa-jt", "facial-expression-recognition", "image-classification"]
    assert meta["datasets"] == ["raf-db", "affectnet"]
    assert set(meta["metrics"]) >= {"accuracy", "f1", "precision", "recall"}
    results = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert results["accuracy"] == pytest.approx(info["metrics"]["eval_accuracy"], abs=1e-6)
    assert results["f1"] == pytest.approx(info["metrics"]["eval_macro_f1"], abs=1e-6)

    assert "SSPA-JT" in card and "10.3390/electronics13193891" in card
    model = _section(card, "Model")
    assert "| Experts (k) | 3 |" in model and "ARM" in model and "224 x 224 px" in model
    assert "mean of the k expert probabilities" in model
    data = _section(card, "Training data")
    assert "| Target dataset | RAF-DB |" in data and "| Auxiliary dataset | AffectNet |" in data
    assert "| Auxiliary fraction p | 0.4 |" in data
    hyper = _section(card, "Training hyperparameters")
    assert "| learning_rate | 0.001 |" in hyper and "| selection_epochs | 40 |" in hyper

    evaluation = _section(card, "Evaluation")
    m = info["metrics"]
    assert f"| Accuracy (Eq. 9) | {100 * m['eval_accuracy']:.2f} |" in evaluation
    assert f"| Macro F1 (Eq. 12, mean of per-class F1) | {100 * m['eval_macro_f1']:.2f} |" in evaluation
    fear = (
        f"| fear | {100 * m['eval_precision/fear']:.2f} | {100 * m['eval_recall/fear']:.2f} | "
        f"{100 * m['eval_f1/fear']:.2f} | {m['eval_support/fear']} |"
    )
    assert fear in evaluation

    selection = _section(card, "Sample selection")
    for c, name in enumerate(EXPRESSIONS):
        assert f"| {name} | {c + 2} | {c + 1} | {100 * (c + 1) / (c + 2):.2f} |" in selection
    assert "| **all** | 35 | 28 |" in selection
    # 35 auxiliary samples, 28 consistent; 28 selected, of which 21 consistent: precision 21/28, recall 21/28.
    assert "precision 75.00 %, recall 75.00 %, F1 75.00 %" in selection

    pairing = _section(card, "Paired augmentation")
    assert "| anger | 0 |" in pairing and "| surprise | 60 |" in pairing

    usage = _section(card, "How to use")
    assert "```python" in usage
    assert 'pipeline("image-classification", model="someone/sspa-rafdb-affectnet", trust_remote_code=True)' in usage

    limits = _section(card, "Limitations")
    assert "RAF-DB and AffectNet" in limits and "7 basic expressions" in limits
    assert "high-stakes" in limits and "bias" in limits and "mean of their probabilities" in limits
    assert NOT_RECORDED not in card


def test_metrics_with_or_without_eval_prefix_give_the_same_card(tmp_path):
    assert render_model_card(_info(tmp_path, prefixed=True)) == render_model_card(_info(tmp_path, prefixed=False))
    assert normalise_metrics({"eval_accuracy": 0.9, "accuracy": 0.1, "test_accuracy": 0.5}) == {"accuracy": 0.9}
    assert normalise_metrics({"test_macro_f1": 0.5, "macro_f1": 0.1}) == {"macro_f1": 0.5}


def test_missing_information_is_written_not_recorded_and_never_crashes(tmp_path):
    card = render_model_card({})
    meta = _front_matter(card)
    assert meta["pipeline_tag"] == "image-classification" and "model-index" not in meta
    assert "| Backbone | not recorded |" in card and "| Accuracy (Eq. 9) | not recorded |" in card
    assert "Per-class selection statistics: not recorded" in card
    assert "PAM mixtures per class: not recorded" in card
    assert "## Training hyperparameters\n\nnot recorded" in card
    assert 'model="path/to/this/model"' in card
    # Partial information: a table path that does not exist, a history with ratios only, odd values.
    partial = {
        "model_name": "my | model",
        "selection_table_path": str(tmp_path / "missing.parquet"),
        "history": [{"epoch": 0.0, "selection/aux_clean_ratio": 0.75, "selection/aux_clean_ratio/class_3": 0.5}],
        "metrics": {"eval_accuracy": float("nan"), "eval_macro_f1": None},
        "hyperparameters": {"note": "a|b"},
    }
    card = render_model_card(partial)
    selection = _section(card, "Sample selection")
    assert "| happiness | not recorded | not recorded | 50.00 |" in selection
    assert "| **all** | not recorded | not recorded | 75.00 |" in selection
    assert "| note | a\\|b |" in card and "| Accuracy (Eq. 9) | not recorded |" in card


def test_write_model_card_and_info_from_an_output_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(
            {"backbone": "resnet", "num_experts": 2, "image_size": 112, "id2label": dict(enumerate(EXPRESSIONS))}
        )
    )
    (run / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.875, "train_loss": 0.3, "epoch": 3.0}))
    (run / "selection_history.json").write_text(json.dumps([{"epoch": 0.0, "selection/aux_clean_ratio": 0.9}]))
    _selection_table(run / "selection.parquet")
    info = info_from_output_dir(run, target_dataset="rafdb:/data/RAF-DB", auxiliary_dataset="affectnet:/data/AN")
    assert info["backbone"] == "resnet" and info["num_experts"] == 2 and info["class_names"] == list(EXPRESSIONS)
    assert info["metrics"] == {"eval_accuracy": 0.875}
    path = write_model_card(run, info)
    assert path == run / "README.md"
    card = path.read_text(encoding="utf-8")
    assert "| Accuracy (Eq. 9) | 87.50 |" in card and "| Experts (k) | 2 |" in card
    assert _front_matter(card)["datasets"] == ["rafdb", "affectnet"]  # short names, no local paths
    assert "| **all** | 35 | 28 |" in card
