"""sspa-eval and sspa-predict on a tiny saved model and a few generated faces."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_BACKBONE as TINY
from PIL import Image

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.commands import evaluate as eval_command
from sspa_hf.commands import predict as predict_command
from sspa_hf.data.synthetic import load_synthetic
from sspa_hf.evaluation.metrics import classification_metrics
from sspa_hf.labels import EXPRESSIONS
from sspa_hf.run.folder import read_predictions


def _save_model(folder: Path, id2label: dict[int, str] | None = None) -> SSPAForImageClassification:
    """A tiny model whose predictions vary between faces (scaled expert weights), saved with its processor."""
    torch.manual_seed(3)
    kwargs = {"id2label": id2label} if id2label else {}
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48, **kwargs)).eval()
    with torch.no_grad():
        model.moe.experts.weight.mul_(30)
    model.save_pretrained(folder)
    make_image_processor(48).save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A model folder, and 14 faces saved both as loose PNGs and as an image folder test/<class>/*.png."""
    root = tmp_path_factory.mktemp("evalpredict")
    model = _save_model(root / "model")
    faces = load_synthetic("auxiliary", n=14)["train"]
    loose, truth = [], {}
    for i, row in enumerate(faces):
        image = row["image"].convert("L" if i == 0 else "RGB")  # one grayscale face
        name = EXPRESSIONS[row["label"]]
        folder = root / "data" / "test" / name
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:02d}.png")
        (root / "loose" / ("sub" if i % 2 else "")).mkdir(parents=True, exist_ok=True)
        path = root / "loose" / ("sub" if i % 2 else "") / f"face{i:02d}.png"
        image.save(path)
        loose.append(path)
        truth[folder / f"{i:02d}.png"] = row["label"]
    return {"root": root, "model": model, "loose": loose, "truth": truth}


def _probabilities_of(model: SSPAForImageClassification, paths: list[Path]) -> dict[Path, np.ndarray]:
    """The model's own softmax(logits) for image files, through the saved image processor (one batch)."""
    processor = make_image_processor(48)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    with torch.no_grad():
        probs = model(processor(images, return_tensors="pt")["pixel_values"]).logits.softmax(-1).numpy()
    return dict(zip(paths, probs, strict=True))


def _probabilities(model: SSPAForImageClassification, path: Path) -> np.ndarray:
    return _probabilities_of(model, [path])[path]


def test_predict_writes_top_k_csv_with_the_models_own_probabilities(setup):
    root, model = setup["root"], setup["model"]
    out = root / "preds.csv"
    status = predict_command.main([str(root / "model"), str(root / "loose"), "--top_k", "3", "--output", str(out)])
    assert status == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label_1", "score_1", "label_2", "score_2", "label_3", "score_3", "error"]
    assert all(row["error"] == "" for row in rows)
    assert not (root / "preds.partial.csv").exists()  # renamed once every image was done
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in setup["loose"])  # folder is recursive
    predicted = set()
    all_probs = _probabilities_of(model, [Path(row["path"]) for row in rows])
    for row in rows:
        probs = all_probs[Path(row["path"])]
        order = np.argsort(-probs)
        scores = [float(row[f"score_{i}"]) for i in (1, 2, 3)]
        assert scores == sorted(scores, reverse=True)
        assert [row[f"label_{i}"] for i in (1, 2, 3)] == [EXPRESSIONS[j] for j in order[:3]]
        np.testing.assert_allclose(scores, probs[order[:3]], rtol=1e-5, atol=1e-6)
        predicted.add(row["label_1"])
    assert len(predicted) > 1  # the fixture's model does not answer one class for everything


def test_predict_json_from_files_and_globs_without_duplicates(setup):
    root = setup["root"]
    out = root / "out" / "preds.json"
    first = str(setup["loose"][0])
    argv = [str(root / "model"), first, str(root / "loose" / "sub" / "*.png"), first, "--top_k", "9"]
    assert predict_command.main([*argv, "--output", str(out), "--batch_size", "4"]) == 0
    records = json.loads(out.read_text())
    expected = [first, *sorted(str(p) for p in (root / "loose" / "sub").glob("*.png"))]
    assert [r["path"] for r in records] == expected
    for record in records:
        assert len(record["predictions"]) == 7  # --top_k above the class count gives every class
        assert sum(p["score"] for p in record["predictions"]) == pytest.approx(1.0, abs=1e-5)
        assert {p["label"] for p in record["predictions"]} == set(EXPRESSIONS)
        assert record["error"] is None


def test_predict_prints_csv_to_stdout_without_output(setup, capsys):
    root = setup["root"]
    assert predict_command.main([str(root / "model"), str(setup["loose"][2]), "--top_k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "path,label_1,score_1,error"
    path, label, score, error = lines[1].split(",")
    assert error == ""
    probs = _probabilities(setup["model"], setup["loose"][2])
    assert path == str(setup["loose"][2]) and label == EXPRESSIONS[int(probs.argmax())]
    assert float(score) == pytest.approx(float(probs.max()), abs=1e-6)


@pytest.mark.parametrize(
    "make_argument,needle",
    [
        (lambda root: str(root / "missing.png"), "missing.png not found"),
        (lambda root: str(root / "nothing" / "*.jpg"), "no image matches"),
        (lambda root: str(root / "empty_folder"), "holds no images"),
    ],
)
def test_predict_user_errors_are_one_line_naming_the_culprit(setup, capsys, make_argument, needle):
    root = setup["root"]
    (root / "empty_folder").mkdir(exist_ok=True)
    argument = make_argument(root)
    status = predict_command.main([str(root / "model"), str(setup["loose"][0]), argument])
    err = capsys.readouterr().err.strip()
    assert status == 2
    last = err.splitlines()[-1]  # progress bars may come first
    assert last.startswith("sspa-predict: error: ") and needle in last
    assert "Traceback" not in err


def test_predict_rejects_bad_options_and_missing_models(setup, capsys):
    root, face = setup["root"], str(setup["loose"][0])
    assert predict_command.main([str(root / "model"), face, "--output", str(root / "p.txt")]) == 2
    assert ".csv or .json" in capsys.readouterr().err
    assert predict_command.main([str(root / "model"), face, "--top_k", "0"]) == 2
    assert "--top_k" in capsys.readouterr().err
    assert predict_command.main([str(root / "no_model"), face]) == 2
    assert "no_model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        predict_command.main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    assert "image-classification" in help_text and "examples:" in help_text


def _expected_metrics(model: SSPAForImageClassification, truth: dict[Path, int], names: list[str]) -> dict:
    """classification_metrics of the model's argmax over the image-folder files, computed without the command."""
    probs = _probabilities_of(model, list(truth))
    y_true = list(truth.values())
    y_pred = [names.index(model.config.id2label[int(probs[path].argmax())]) for path in truth]
    return classification_metrics(y_true, y_pred)


def test_eval_writes_metrics_equal_to_classification_metrics_of_the_models_argmax(setup, capsys):
    root = setup["root"]
    spec = f"imagefolder:{root / 'data'}"
    status = eval_command.main([str(root / "model"), spec, "--batch_size", "5"])
    assert status == 0
    out_dir = root / "model" / "eval-imagefolder-data-test"  # default: MODEL/eval-DATASET-SPLIT
    record = json.loads((out_dir / "eval_metrics.json").read_text())
    expected = _expected_metrics(setup["model"], setup["truth"], list(EXPRESSIONS))
    assert {k: record[k] for k in expected} == expected
    assert record["confusion_matrix"] == expected["confusion_matrix"]
    assert record["model"] == str(root / "model") and record["dataset"] == spec
    assert record["split"] == "test" and record["n"] == 14
    with Image.open(out_dir / "confusion_matrix.png") as image:
        assert image.format == "PNG"
    printed = capsys.readouterr().out
    assert f"accuracy         {100 * expected['accuracy']:6.2f} %" in printed and "surprise" in printed


def test_eval_maps_the_models_label_order_onto_the_datasets_by_name(setup, tmp_path):
    reversed_labels = dict(enumerate(reversed(EXPRESSIONS)))
    model = _save_model(tmp_path / "reversed", id2label=reversed_labels)
    spec = f"imagefolder:{setup['root'] / 'data'}"
    assert eval_command.main([str(tmp_path / "reversed"), spec, "--output_dir", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "eval_metrics.json").read_text())
    expected = _expected_metrics(model, setup["truth"], list(EXPRESSIONS))
    assert record["confusion_matrix"] == expected["confusion_matrix"]
    assert record["accuracy"] == pytest.approx(expected["accuracy"])
    # The per-face predictions, in the dataset's class order: probability columns by name, argmax = prediction
    faces = read_predictions(tmp_path / "out")
    probs = _probabilities_of(model, list(setup["truth"]))
    expected_probs = np.stack([probs[path] for path in setup["truth"]])  # the model's own (reversed) order
    written = faces[[f"prob/{n}" for n in reversed(EXPRESSIONS)]].to_numpy()

    def by_rows(a: np.ndarray) -> np.ndarray:  # the folder's row order is not the truth dict's: compare as sets
        return a[np.lexsort(np.round(a, 4).T[::-1])]

    np.testing.assert_allclose(by_rows(written), by_rows(expected_probs), atol=1e-5)
    assert sorted(faces.label.tolist()) == sorted(setup["truth"].values())
    assert (faces.prediction.to_numpy() == faces[[f"prob/{n}" for n in EXPRESSIONS]].to_numpy().argmax(1)).all()


def test_eval_user_errors_are_one_line(setup, capsys):
    root = setup["root"]
    spec = f"imagefolder:{root / 'data'}"
    assert eval_command.main([str(root / "model"), spec, "--split", "validation"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("sspa-eval: error: ") and "'validation'" in last and "test" in last
    assert eval_command.main([str(root / "absent_model"), spec]) == 2
    assert "absent_model" in capsys.readouterr().err
    assert eval_command.main([str(root / "model"), f"imagefolder:{root / 'no_data'}"]) == 2
    assert "no_data" in capsys.readouterr().err
    assert eval_command.main([str(root / "model"), spec, "--device", "nonsense"]) == 2
    assert "--device" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        eval_command.main(["--help"])
    assert info.value.code == 0
    assert "eval_metrics.json" in capsys.readouterr().out


def test_trust_remote_code_runs_the_code_saved_in_the_model_folder(setup):
    folder = setup["root"] / "model"
    local, _ = eval_command.load_model(str(folder))
    remote, processor = eval_command.load_model(str(folder), trust_remote_code=True)
    assert type(local).__module__ == "sspa_hf.model.modeling_sspa"
    assert not type(remote).__module__.startswith("sspa_hf")  # the folder's modeling_sspa.py
    with Image.open(setup["loose"][1]) as image:
        pixels = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(remote(pixels).logits, local(pixels).logits, rtol=0, atol=0)
