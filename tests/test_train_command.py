"""sspa-train: every recipe through the real parser, a tiny end-to-end run, Hub push through a stand-in API."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from huggingface_hub import ModelCard

from sspa_hf.commands.train import main, parse_arguments
from sspa_hf.labels import EXPRESSIONS

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PAPER = sorted(p for p in (RECIPES / "paper").rglob("*.yaml") if p.name != "base.yaml")
TINY_FLAGS = [
    "--target_dataset",
    "synthetic:?role=target&n=70",
    "--auxiliary_dataset",
    "synthetic:?role=auxiliary&n=70",
    "--backbone_depths",
    "1",
    "1",
    "1",
    "1",
    "--backbone_hidden_sizes",
    "8",
    "16",
    "32",
    "64",
    "--backbone_embedding_size",
    "8",
    "--num_train_epochs",
    "2",
    "--selection_epochs",
    "1",
    "--per_device_train_batch_size",
    "35",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
]


def test_paper_recipes_cover_every_table():
    names = {p.relative_to(RECIPES / "paper").as_posix() for p in PAPER}
    assert len([n for n in names if n.startswith("ablations/")]) == 16  # Table 5: 8 module sets x 2 backbones
    assert len([n for n in names if n.startswith("experts/")]) == 4  # Table 6 (k = 3 is the main ARM recipe)
    assert len([n for n in names if n.startswith("mixup/")]) == 15  # Table 7 (alpha 5, beta 1 is the main one)
    assert len([n for n in names if n.startswith("fractions/")]) == 12  # Table 8 (10 % is the main one)
    assert len([n for n in names if n.startswith("baselines/")]) == 8  # Tables 3-4: target only, straight
    for main_recipe in ("rafdb_affectnet10_resnet18", "rafdb_affectnet10_arm", "caers_affectnet20_resnet18"):
        assert f"{main_recipe}.yaml" in names


@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.stem)
def test_every_paper_recipe_parses_with_section_4_1_3_settings(recipe):
    model, data, train = parse_arguments([str(recipe)])
    name = recipe.stem
    assert train.per_device_train_batch_size == 128
    assert (train.optim.value, train.optim_args) == ("sgd", "momentum=0.9")
    assert (train.learning_rate, train.weight_decay, train.num_train_epochs) == (0.01, 0.005, 80)
    assert train.lr_scheduler_type.value == "cosine" and train.warmup_steps == 0
    assert (train.selection_epochs, train.ema_momentum) == (40, 0.95)
    assert train.sync_batch_stats  # with N processes, the batch statistics of the paper's one batch of 128
    assert model.image_size == 224 and train.crop_padding > 0
    assert model.backbone == (
        "arm" if "arm" in name or name.startswith("table6") or name.startswith("table7") else "resnet"
    )
    expected_k, alpha, beta = 3, 5.0, 1.0
    if name.startswith("table6_k"):
        expected_k = int(name.removeprefix("table6_k"))
    if name.startswith("table7_"):
        alpha, beta = (float(part.removeprefix("alpha").removeprefix("beta")) for part in name.split("_")[1:])
    if name.startswith("table5_"):
        modules = set(name.split("_")[2:])
        expected_k = 3 if "moe" in modules else 1
        assert train.use_selection == ("ssm" in modules)
        assert train.fix_target == ("dt" in modules)
        assert train.use_pairing == ("pam" in modules)
        assert data.auxiliary_fraction == pytest.approx(0.10)
    if "_only_" in name or "_straight_" in name:
        expected_k = 1
        assert not train.use_selection and not train.use_pairing
        assert (data.auxiliary_dataset is None) == ("_only_" in name)
    if name.startswith("table8_"):
        percent = int(name.rsplit("_p", 1)[1])
        if percent == 0:
            assert data.auxiliary_dataset is None
        else:
            assert data.auxiliary_fraction == pytest.approx(percent / 100)
    assert model.num_experts == expected_k
    assert (train.mixup_alpha, train.mixup_beta) == (alpha, beta)
    assert train.output_dir.startswith("runs/")


def test_quickstart_and_flags_override_the_recipe():
    model, data, train = parse_arguments([str(RECIPES / "quickstart.yaml"), "--num_train_epochs", "3", "--seed", "9"])
    assert (train.num_train_epochs, train.seed, model.image_size) == (3, 9, 48)
    assert data.auxiliary_dataset.startswith("synthetic:")


@pytest.mark.parametrize(
    "content,needle",
    [
        ("num_train_epochs: 2\nnot_an_argument: 1\n", "not_an_argument"),
        ("extends: missing.yaml\n", "missing.yaml not found"),
        ("num_train_epochs: [1, 2\n", "not valid YAML"),
        ("allocation: simplex\n", "simplex"),
    ],
)
def test_recipe_mistakes_are_one_line_errors(tmp_path, capsys, content, needle):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(content)
    assert main([str(recipe), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sspa-train: error:") and needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


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

    import sspa_hf.hub

    hub = _StandInHub(tmp_path / "hub")
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    monkeypatch.setattr(sspa_hf.hub, "push_problem", lambda token=None: None)  # the stand-in is reachable
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


@pytest.mark.parametrize("recipe", sorted((RECIPES / "beyond").rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_beyond_recipe_is_its_paper_recipe_in_transition_mode(recipe):
    model, data, train = parse_arguments([str(recipe)])
    paper = RECIPES / "paper" / recipe.relative_to(RECIPES / "beyond")
    paper_model, paper_data, paper_train = parse_arguments([str(paper)])
    assert (train.selection_mode, model.num_experts, paper_train.selection_mode) == ("transition", 1, "paper")
    assert data == paper_data and model.backbone == paper_model.backbone
    assert (train.num_train_epochs, train.learning_rate, train.seed) == (80, 0.01, paper_train.seed)
    assert train.output_dir == f"runs/beyond_{recipe.stem}"
