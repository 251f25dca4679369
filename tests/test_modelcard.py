"""Model cards: written from a run folder, read back with `ModelCard.load`: metadata, model-index, every section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import ModelCard

from sspa_hf import SSPAConfig
from sspa_hf.evaluation.metrics import classification_metrics
from sspa_hf.labels import EXPRESSIONS
from sspa_hf.run.modelcard import dataset_id, model_card
from sspa_hf.training.arguments import SSPATrainingArguments


def _section(card: str, title: str) -> str:
    body = card.split(f"\n## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def _selection_table(path) -> pd.DataFrame:
    """20 target rows, then auxiliary rows with known counts: class c has c + 2 auxiliary samples, c + 1 clean."""
    rows = [{"label": c % 7, "is_target": True, "clean": True, "reference_label": c % 7} for c in range(20)]
    for c in range(7):
        for j in range(c + 2):
            consistent = j != 0  # the first of each class disagrees with its reference label
            rows.append(
                {
                    "label": c,
                    "is_target": False,
                    "clean": j < c + 1,
                    "reference_label": c if consistent else (c + 1) % 7,
                }
            )
    frame = pd.DataFrame(rows)
    frame.insert(0, "sample_index", np.arange(len(frame)))
    frame.insert(1, "source", np.where(frame["is_target"], "rafdb", "affectnet"))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return frame


def _run(tmp_path) -> tuple:
    """A run folder as sspa-train leaves it (metrics, selection table and history), with its config and args."""
    run = tmp_path / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    metrics = classification_metrics(y, np.where(rng.random(300) < 0.8, y, rng.integers(0, 7, 300)))
    (run / "eval_metrics.json").write_text(json.dumps(metrics))
    _selection_table(run / "selection.parquet")
    history = [
        {"epoch": 0.0, "selection/aux_clean_ratio": 1.0},
        {"epoch": 1.0, "selection/aux_clean_ratio": 0.8, **{f"pairing/created/class_{c}": 10.0 * c for c in range(7)}},
    ]
    (run / "selection_history.json").write_text(json.dumps(history))
    args = SSPATrainingArguments(
        output_dir=str(run), hub_model_id="someone/sspa-rafdb-affectnet", learning_rate=0.001, selection_epochs=40
    )
    return run, SSPAConfig(backbone="arm", num_experts=3, image_size=224), args, metrics


def test_card_written_and_loaded_back_has_hub_metadata_model_index_and_every_section(tmp_path):
    run, config, args, metrics = _run(tmp_path)
    datasets = ["rafdb:/data/RAF-DB/basic", "affectnet:/data/AffectNet?align=1"]
    model_card(run, config, args, train_datasets=datasets).save(run / "README.md")

    card = ModelCard.load(run / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0" and data.tags == [
        "sspa-jt",
        "facial-expression-recognition",
        "image-classification",
    ]
    assert data.datasets == ["rafdb", "affectnet"]  # short names, never local paths
    assert data.model_name == "someone/sspa-rafdb-affectnet"
    results = {r.metric_type: r for r in data.eval_results}
    assert set(results) == {"accuracy", "precision", "recall", "f1"}
    assert results["accuracy"].metric_value == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert results["f1"].metric_value == pytest.approx(metrics["macro_f1"], abs=1e-6)
    assert {(r.dataset_name, r.dataset_split, r.task_type) for r in data.eval_results} == {
        ("rafdb", "test", "image-classification")
    }

    text = card.text
    assert "SSPA-JT" in text and "10.3390/electronics13193891" in text
    model = _section(text, "Model")
    assert "| Experts (k) | 3 |" in model and "ARM" in model and "224 x 224 px" in model
    training = _section(text, "Training data")
    assert f"| Target | {datasets[0]} | 20 |" in training and f"| Auxiliary | {datasets[1]} | 35 |" in training
    hyper = _section(text, "Training hyperparameters")
    assert "| learning rate | 0.001 |" in hyper and "| selection_epochs (T_S) | 40 |" in hyper
    evaluation = _section(text, "Evaluation")
    assert f"| Accuracy (Eq. 9) | {100 * metrics['accuracy']:.2f} |" in evaluation
    fear = (
        f"| fear | {100 * metrics['precision/fear']:.2f} | {100 * metrics['recall/fear']:.2f} | "
        f"{100 * metrics['f1/fear']:.2f} | {metrics['support/fear']} |"
    )
    assert fear in evaluation
    selection = _section(text, "Sample selection")
    for c, name in enumerate(EXPRESSIONS):
        assert f"| {name} | {c + 2} | {c + 1} | {100 * (c + 1) / (c + 2):.2f} |" in selection
    assert "| **all** | 35 | 28 | 80.00 |" in selection
    # 35 auxiliary samples, 28 consistent; 28 selected, of which 21 consistent: precision 21/28, recall 21/28.
    assert "precision 75.00 %, recall 75.00 %, F1 75.00 %" in selection
    pairing = _section(text, "Paired augmentation")
    assert "| anger | 0 |" in pairing and "| surprise | 60 |" in pairing
    assert 'model="someone/sspa-rafdb-affectnet", trust_remote_code=True' in _section(text, "How to use")
    limits = _section(text, "Limitations")
    assert datasets[0] in limits and "high-stakes" in limits and "mean of their probabilities" in limits


def test_card_of_a_bare_run_folder_falls_back_to_the_table_and_says_what_is_missing(tmp_path):
    run, config, args, _ = _run(tmp_path)
    (run / "eval_metrics.json").unlink()
    args.hub_model_id = None
    model_card(run, config, args).save(run / "README.md")
    card = ModelCard.load(run / "README.md")
    assert card.data.eval_results is None and card.data.model_name == "run"
    assert "| Target | rafdb | 20 |" in card.text and "| Auxiliary | affectnet | 35 |" in card.text
    assert "Not recorded (the run wrote no eval_metrics.json)" in card.text
    assert 'model="path/to/this/model"' in card.text

    (run / "selection.parquet").unlink()
    (run / "selection_history.json").unlink()
    text = ModelCard(str(model_card(run, config, args))).text
    assert "No auxiliary data, or no selection.parquet" in text and "No PAM mixtures were created" in text


def test_dataset_ids_never_leak_local_paths():
    assert dataset_id("hf:someone/faces?label_column=emotion") == "someone/faces"
    assert dataset_id("ferplus:/home/me/data/fer") == "ferplus"
    assert dataset_id("/home/me/prepared/rafdb/") == "rafdb"


def test_a_run_on_the_built_in_generated_faces_says_so_plainly(tmp_path):
    run, config, args, _ = _run(tmp_path)
    synthetic = ["synthetic:?role=target&n=1200", "synthetic:?role=auxiliary&n=1200"]
    text = ModelCard(str(model_card(run, config, args, train_datasets=synthetic))).text
    assert "This model has seen only generated faces" in text
    real = ModelCard(str(model_card(run, config, args, train_datasets=["rafdb:data/RAF-DB", synthetic[1]]))).text
    assert "only generated faces" not in real


def test_card_lists_only_the_settings_its_selection_mode_reads(tmp_path):
    from sspa_hf.run.modelcard import _hyperparameters

    paper = _hyperparameters(SSPATrainingArguments(output_dir=str(tmp_path), selection_epochs=40))
    straight = _hyperparameters(SSPATrainingArguments(output_dir=str(tmp_path), selection_mode="straight"))
    assert "ema_momentum (eta)" in paper and "crossfit_folds" not in paper
    assert straight["selection_mode"] == "straight" and not {"ema_momentum (eta)", "allocation"} & set(straight)
    assert straight["epochs"] == paper["epochs"] == 80
    schedule = {"selection_epochs": 1, "num_train_epochs": 2}
    pam = SSPATrainingArguments(output_dir=str(tmp_path), selection_mode="transition_pam", prior_weight=0.5, **schedule)
    assert _hyperparameters(pam)["prior_weight (w)"] == 0.5 and "prior_weight (w)" not in paper  # w on its card
    assert list(paper)[:3] == ["selection_mode", "epochs", "selection_epochs (T_S)"]  # T_S beside the epochs
