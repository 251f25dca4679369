"""sspa-train runs: a tiny end-to-end run that writes everything and pushes through a stand-in Hub API, and a
resume with nothing to resume from. The recipes and flags themselves: test_train_parser.py."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import RECIPES, TINY_FLAGS, launch_two_processes
from huggingface_hub import ModelCard

from sspa_hf.commands.train import main
from sspa_hf.labels import EXPRESSIONS


def test_missing_recipe_and_nothing_to_resume_are_one_line_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
    flags = [str(RECIPES / "quickstart.yaml"), *TINY_FLAGS, "--output_dir", str(tmp_path / "empty")]
    assert main([*flags, "--resume_from_checkpoint", "true"]) == 2
    assert "No checkpoint to resume from" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()  # refused before any work: no folder, no run_status.json


class _StandInHub:
    """Records what Trainer.push_to_hub sends: create_repo and upload_folder copy into a local folder."""

    def __init__(self, root: Path) -> None:
        self.root, self.uploads = root, []

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kwargs):
        self.uploads.append(repo_id)
        for path in Path(folder_path).rglob("*"):
            relative = path.relative_to(folder_path).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(part, p) for p in ignore_patterns for part in [relative]):
                target = self.root / repo_id / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
        return SimpleNamespace(commit_url="local")


def test_train_writes_everything_and_pushes_through_the_hub_api(tmp_path, monkeypatch, capsys):
    import transformers.trainer

    import sspa_hf.commands.hub

    hub = _StandInHub(tmp_path / "hub")
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    monkeypatch.setattr(sspa_hf.commands.hub, "push_problem", lambda token=None: None)  # the stand-in is reachable
    out = tmp_path / "run"
    flags = [str(RECIPES / "quickstart.yaml"), *TINY_FLAGS, "--output_dir", str(out)]
    assert main([*flags, "--push_to_hub", "true", "--hub_model_id", "fer-lab/sspa-tiny"]) == 0
    printed = capsys.readouterr().out
    assert "selection precision" in printed and "macro F1" in printed
    last = printed.strip().splitlines()[-1]  # a fresh session needs trust_remote_code, else it prompts and fails
    assert f"pipeline('image-classification', model='{out}', trust_remote_code=True)" in last
    assert json.loads((out / "run_status.json").read_text())["status"] == "complete"
    # the generated faces are used as they are: inference must not detect and re-crop them
    assert json.loads((out / "config.json").read_text())["face_preparation"] == {"faces": "given", "crop_size": 0}
    for name in (
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "modeling_sspa.py",
        "configuration_sspa.py",
        "pipeline_sspa.py",
        "pixels.py",
        "selection.parquet",
        "selection_history.json",
        "eval_metrics.json",
        "confusion_matrix.png",
        "class_distribution.png",
        "clean_ratio.png",
        "selection_grid.png",
        "README.md",
    ):
        assert (out / name).is_file(), name
        assert (tmp_path / "hub" / "fer-lab" / "sspa-tiny" / name).is_file(), f"{name} not pushed"
    card = (tmp_path / "hub" / "fer-lab" / "sspa-tiny" / "README.md").read_text()
    metrics = json.loads((out / "eval_metrics.json").read_text())
    faces = pd.read_parquet(out / "eval_predictions.parquet")  # per face, for paired intervals between runs
    assert len(faces) == sum(metrics[f"support/{name}"] for name in EXPRESSIONS)
    assert (faces.label == faces.prediction).mean() == pytest.approx(metrics["accuracy"])
    probabilities = faces[[f"prob/{name}" for name in EXPRESSIONS]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(axis=1) == faces.prediction).all()
    assert "SSPA-JT" in card and 'pipeline("image-classification", model="fer-lab/sspa-tiny"' in card
    assert f"{100 * metrics['accuracy']:.2f}" in card  # the metrics table
    assert "## Sample selection" in card and "synthetic:?role=auxiliary&n=70" in card
    assert "pipeline_tag: image-classification" in card and "library_name: transformers" in card
    loaded = ModelCard.load(tmp_path / "hub" / "fer-lab" / "sspa-tiny" / "README.md")
    results = {r.metric_type: r.metric_value for r in loaded.data.eval_results}
    assert results["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert results["f1"] == pytest.approx(metrics["macro_f1"], abs=1e-6)

    from transformers import pipeline

    pushed = str(tmp_path / "hub" / "fer-lab" / "sspa-tiny")
    classifier = pipeline("image-classification", model=pushed, trust_remote_code=True)  # the folder's pipeline
    from PIL import Image

    scores = classifier(Image.new("L", (48, 48), 128), top_k=7)
    assert {row["label"] for row in scores} == {
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
    }
    assert sum(row["score"] for row in scores) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_train_command_on_two_processes_ends_cleanly_with_one_loadable_model(tmp_path):
    """`accelerate launch` of sspa-train on two gloo processes: exit status 0 on every rank (the process group is
    destroyed after the run; gloo's threads left to interpreter exit abort a rank on some runs), one model folder."""
    from transformers import AutoModelForImageClassification

    out = tmp_path / "run"
    train = ["-m", "sspa_hf.commands.train", str(RECIPES / "quickstart.yaml"), *TINY_FLAGS]
    train += ["--per_device_train_batch_size", "16", "--output_dir", str(out)]
    result = launch_two_processes(*train, port_offset=7)
    assert "terminate called" not in result.stderr and "Traceback" not in result.stderr
    assert json.loads((out / "run_status.json").read_text())["status"] == "complete"
    assert result.stdout.count("model folder") == 1  # the summary comes from the main process only
    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True)
    assert model.config.num_labels == len(EXPRESSIONS)
