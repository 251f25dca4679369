"""sspa-predict, sspa-eval and sspa-export-onnx check first and never lose results: torn model folders and unfinished
runs are one line, output paths are checked before any work, rows are written as they come (a stopped run keeps
them), a bad image is a row with its error, odd image sizes are one warning line; and what a person sees (labels,
the --detect_faces notice)."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_BACKBONE as TINY
from PIL import Image

from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor
from sspa_hf.commands import evaluate as eval_command
from sspa_hf.commands import export_onnx as onnx_command
from sspa_hf.commands import predict as predict_command
from sspa_hf.commands.photos import BOX_COLOUR, FaceRow, annotate, preparation_of
from sspa_hf.labels import EXPRESSIONS

N_IMAGES = 17


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A tiny saved model (48x48 input), 17 face-sized noise images in faces/, and an image folder data set."""
    root = tmp_path_factory.mktemp("inferencechecks")
    torch.manual_seed(0)
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY, image_size=48)).eval()
    model.save_pretrained(root / "model")
    make_image_processor(48).save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    (root / "faces").mkdir()
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "faces" / f"{i:02d}.png")
    for name in EXPRESSIONS:
        (root / "data" / "test" / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "data" / "test" / name / "a.png")
    return {"root": root, "model": root / "model", "faces": root / "faces", "spec": f"imagefolder:{root / 'data'}"}


def _one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: ")]
    assert len(lines) == 1, err
    return lines[0]


def _argv(command, model: Path, setup: dict, tmp_path: Path) -> list[str]:
    if command is predict_command:
        return [str(model), str(setup["faces"])]
    if command is eval_command:
        return [str(model), setup["spec"], "--output_dir", str(tmp_path / "eval")]
    return [str(model), str(tmp_path / "model.onnx")]


ONNX = pytest.param(
    onnx_command, marks=pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the onnx extra")
)
COMMANDS = [predict_command, eval_command, ONNX]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_torn_model_file_is_one_line_naming_it(setup, tmp_path, capsys, command):
    model = tmp_path / "model"
    shutil.copytree(setup["model"], model)
    weights = model / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    assert command.main(_argv(command, model, setup, tmp_path)) == 2
    line = _one_line(capsys, command.PROG)
    assert f"model folder {model}: model.safetensors is truncated or corrupt ({size // 2} bytes)" in line


def _killed_during_final_save(setup: dict, run: Path, status: dict) -> None:
    """What a kill between the final save's model and image-processor files leaves (Trainer._save's order)."""
    shutil.copytree(setup["model"], run / "checkpoint-4")
    shutil.copytree(setup["model"], run, dirs_exist_ok=True)
    (run / "preprocessor_config.json").unlink()
    (run / "run_status.json").write_text(json.dumps(status))
    (run / "recipe.yaml").write_text("output_dir: run\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_run_killed_during_its_final_save_is_named_with_how_to_finish_it(setup, tmp_path, capsys, command):
    run = tmp_path / "run"
    _killed_during_final_save(setup, run, {"status": "interrupted"})
    assert command.main(_argv(command, run, setup, tmp_path)) == 2
    line = _one_line(capsys, command.PROG)
    what = "unfinished training run (run_status.json: interrupted; preprocessor_config.json missing)"
    assert f"{run} is an {what}" in line
    assert f"finish it with `sspa-train {run / 'recipe.yaml'} --resume_from_checkpoint true`" in line
    assert f"or give its last checkpoint {run / 'checkpoint-4'} as the model" in line
    assert "huggingface.co" not in line


def test_a_run_still_training_is_named_as_such(setup, tmp_path, capsys):
    run = tmp_path / "run"
    _killed_during_final_save(setup, run, {"status": "running", "heartbeat_unix": time.time() - 20})
    assert predict_command.main([str(run), str(setup["faces"])]) == 2
    line = _one_line(capsys, "sspa-predict")
    assert "unfinished training run (run_status.json: running;" in line and "wait for it to end" in line


def test_a_run_without_a_complete_checkpoint_says_to_train_again_and_a_bare_folder_says_what_it_lacks(
    setup, tmp_path, capsys
):
    run = tmp_path / "run"
    _killed_during_final_save(setup, run, {"status": "interrupted"})
    shutil.rmtree(run / "checkpoint-4")
    assert predict_command.main([str(run), str(setup["faces"])]) == 2
    line = _one_line(capsys, "sspa-predict")
    again = f"sspa-train {run / 'recipe.yaml'} --overwrite_output_dir true"
    assert f"with no complete checkpoint: train it again with `{again}`" in line
    bare = tmp_path / "bare"
    shutil.copytree(setup["model"], bare)
    (bare / "preprocessor_config.json").unlink()
    assert predict_command.main([str(bare), str(setup["faces"])]) == 2
    assert f"model folder {bare}: preprocessor_config.json missing; copy it again" in _one_line(capsys, "sspa-predict")


def test_the_complete_model_of_a_run_stopped_after_its_final_save_is_used_with_a_warning(setup, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(setup["model"], run)
    (run / "run_status.json").write_text('{"status": "failed"}')
    assert predict_command.main([str(run), str(setup["faces"] / "00.png")]) == 0
    captured = capsys.readouterr()
    assert f"sspa-predict: warning: {run} is a training run that did not finish (run_status.json: failed)" in (
        captured.err
    )
    assert len(captured.out.strip().splitlines()) == 2


def _no_model_loading(monkeypatch) -> None:
    """Loading a model fails the test: a refusal must come before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    for module in (predict_command, eval_command, onnx_command):
        monkeypatch.setattr(module, "load_model", refuse)


@pytest.mark.parametrize(
    "case",
    ["output_in_a_file", "output_is_a_folder", "annotate_is_a_file", "eval_dir_is_a_file", "eval_dir_in_a_file"],
)
def test_output_paths_are_checked_before_any_work(setup, tmp_path, capsys, monkeypatch, case):
    _no_model_loading(monkeypatch)
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    (tmp_path / "folder.csv").mkdir()
    model, faces = str(setup["model"]), str(setup["faces"])
    argv, needle = {
        "output_in_a_file": (
            ["--output", str(a_file / "preds.csv")],
            f"--output {a_file / 'preds.csv'}: its folder {a_file} is a file",
        ),
        "output_is_a_folder": (["--output", str(tmp_path / "folder.csv")], "is a folder; give a file name"),
        "annotate_is_a_file": (["--detect_faces", "--annotate", str(a_file)], f"--annotate {a_file} is a file"),
        "eval_dir_is_a_file": (["--output_dir", str(a_file)], f"--output_dir {a_file} is a file"),
        "eval_dir_in_a_file": (["--output_dir", str(a_file / "x")], f"cannot be made: {a_file} is a file"),
    }[case]
    command = eval_command if case.startswith("eval") else predict_command
    first = [model, setup["spec"]] if command is eval_command else [model, faces]
    assert command.main([*first, *argv]) == 2
    assert needle in _one_line(capsys, command.PROG)
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the onnx extra")
def test_export_onnx_checks_its_output_before_loading(setup, tmp_path, capsys, monkeypatch):
    _no_model_loading(monkeypatch)
    (tmp_path / "a_file").write_text("mine")
    assert onnx_command.main([str(setup["model"]), str(tmp_path / "a_file" / "m.onnx")]) == 2
    assert f"its folder {tmp_path / 'a_file'} is a file" in _one_line(capsys, "sspa-export-onnx")


def _run_in_read_only(folder: Path, module: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run `python -m module args` with `folder` read-only: by its mode, or for root (whom modes do not stop) by a
    read-only bind mount in a private mount namespace."""
    command = [sys.executable, "-m", module, *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare cannot make a read-only folder")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root without the right to make a mount namespace cannot make a read-only folder")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_read_only_output_is_refused_before_any_work(setup, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    if command == "predict":
        args = [str(setup["model"]), str(setup["faces"]), "--output", str(locked / "preds.csv")]
    else:
        args = [str(setup["model"]), setup["spec"], "--output_dir", str(locked / "eval")]
    result = _run_in_read_only(locked, f"sspa_hf.commands.{command}", args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Loading weights" not in result.stderr  # refused before the model
    assert f"{locked} is not writable (" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert list(locked.iterdir()) == []


def test_a_bad_image_is_a_row_with_its_error_and_the_others_are_predicted(setup, tmp_path, capsys):
    faces = tmp_path / "faces"
    shutil.copytree(setup["faces"], faces)
    (faces / "07.png").write_bytes(b"not an image at all")
    out = tmp_path / "preds.csv"
    assert predict_command.main([str(setup["model"]), str(faces), "--output", str(out), "--batch_size", "4"]) == 1
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rows] == [f"{i:02d}.png" for i in range(N_IMAGES)]
    bad = rows[7]
    assert bad["error"] == "not an image file PIL can read (unknown or corrupt format)" and bad["label_1"] == ""
    assert all(r["error"] == "" and r["label_1"] in EXPRESSIONS for i, r in enumerate(rows) if i != 7)
    err = capsys.readouterr().err
    summary = f"sspa-predict: 1 of {N_IMAGES} images could not be read, e.g. {faces / '07.png'} ("
    assert summary in err and "their rows carry the error" in err and "0x" not in err


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_run_stopped_late_keeps_the_rows_done_in_a_partial_file(setup, tmp_path, capsys, monkeypatch, suffix):
    out = tmp_path / f"preds{suffix}"
    out.write_text("an earlier result")
    read = predict_command.read_image

    def stop_at_the_tenth(path, notes=None):
        if path.name == "09.png":
            raise KeyboardInterrupt
        return read(path, notes)

    monkeypatch.setattr(predict_command, "read_image", stop_at_the_tenth)
    argv = [str(setup["model"]), str(setup["faces"]), "--output", str(out), "--batch_size", "1"]
    assert predict_command.main(argv) == 130
    partial = tmp_path / f"preds.partial{suffix}"
    assert out.read_text() == "an earlier result"  # never replaced by an unfinished run
    if suffix == ".csv":
        with partial.open() as handle:
            done = [row["path"] for row in csv.DictReader(handle)]
    else:
        done = [record["path"] for record in json.loads(partial.read_text())]  # the list is closed: it parses
    assert [Path(p).name for p in done] == [f"{i:02d}.png" for i in range(8)]  # two chunks of 4 were done
    assert f"sspa-predict: the 8 rows done so far are in {partial} (incomplete" in capsys.readouterr().err


def test_a_huge_image_is_read_with_one_warning_and_one_above_pils_limit_is_a_bad_row(setup, tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    Image.new("RGB", (40, 30), (90, 90, 90)).save(faces / "huge.png")  # 1200 pixels, over the limit set below
    Image.new("RGB", (50, 50), (90, 90, 90)).save(faces / "bomb.png")  # 2500 pixels, over twice the limit
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        status = predict_command.main([str(setup["model"]), str(faces), "--top_k", "1"])
    assert status == 1
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    captured = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in csv.DictReader(captured.out.splitlines())}
    assert rows["huge.png"]["label_1"] in EXPRESSIONS and rows["huge.png"]["error"] == ""
    assert rows["bomb.png"]["error"].startswith("50x50 pixels") and "decompression bombs" in rows["bomb.png"]["error"]
    assert "(0.0025 megapixels), above the 0.002 megapixels PIL decodes" in rows["bomb.png"]["error"]
    warning = "sspa-predict: warning: 1 image is over the 0.001 megapixels PIL decodes without a decompression-bomb "
    assert warning + f"warning, e.g. {faces / 'huge.png'} (40x30): read anyway" in captured.err


def test_a_tiny_image_is_classified_with_a_warning(setup, tmp_path, capsys):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "dot.png")
    assert predict_command.main([str(setup["model"]), str(tmp_path / "dot.png"), "--top_k", "1"]) == 0
    captured = capsys.readouterr()
    (row,) = csv.DictReader(captured.out.splitlines())
    assert row["label_1"] in EXPRESSIONS
    expected = "sspa-predict: warning: 1 image is far smaller than the model's 48x48 input, e.g. "
    assert expected + f"{tmp_path / 'dot.png'} (1x1): enlarged to it and classified" in captured.err


def test_the_detect_faces_notice_says_what_it_means_and_what_to_do(caplog):
    config = SSPAConfig(backbone_config=TINY, face_preparation={"faces": "given", "crop_size": 0})
    with caplog.at_level(logging.WARNING, logger="sspa_hf.commands.photos"):
        preparation_of(config)
    assert "this model's training faces came as face crops (the data set's images, used as they are)" in caplog.text
    assert "If your images are already face crops, leave out --detect_faces" in caplog.text
    assert "(given)" not in caplog.text


def _label_band(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, float]:
    """Height of the filled label above `box` (the rows above its top edge holding the box colour) and its share of
    dark (text) pixels."""
    pixels = np.asarray(image)
    x, y, w, _ = box
    height = 0
    while height < y and (pixels[y - 1 - height, x : x + w] == BOX_COLOUR).all(axis=1).any():
        height += 1
    band = pixels[y - height : y, x : x + w]
    return height, float((band.max(axis=2) < 60).mean())


def test_labels_are_filled_boxes_scaled_to_the_face_over_a_dark_background():
    dark = Image.new("RGB", (640, 480), (5, 5, 5))
    small, large = (40, 300, 40, 40), (250, 120, 300, 300)
    best = [{"label": "happiness", "score": 0.93}]
    drawn = annotate(dark, [FaceRow("a", None, 0, small, best), FaceRow("a", None, 1, large, best)])
    small_height, small_ink = _label_band(drawn, small)
    large_height, large_ink = _label_band(drawn, large)
    assert 12 <= small_height < large_height  # readable when small, larger on a larger face
    assert 0.05 < small_ink < 0.6 and 0.05 < large_ink < 0.6  # dark text on the filled box, not bare text


def test_a_run_killed_between_its_final_model_and_processor_files_is_finished_as_the_refusal_says(
    tmp_path, capsys, monkeypatch
):
    """A real run stopped inside its final save (after the weights, before the image processor: Trainer._save's
    order) is refused by name; the resume the refusal gives finishes it, and the model then predicts."""
    from helpers import QUICKSTART
    from helpers import TINY_FLAGS as TINY_RUN
    from transformers import ViTImageProcessorPil

    from sspa_hf.commands.train import main as train

    run = tmp_path / "run"
    save = ViTImageProcessorPil.save_pretrained

    def killed_in_the_final_save(self, save_directory, *args, **kwargs):
        if Path(save_directory) == run:
            raise KeyboardInterrupt("terminated by SIGTERM")
        return save(self, save_directory, *args, **kwargs)

    monkeypatch.setattr(ViTImageProcessorPil, "save_pretrained", killed_in_the_final_save)
    flags = [QUICKSTART, *TINY_RUN, "--output_dir", str(run), "--save_strategy", "epoch"]
    assert train(flags) != 0
    assert (run / "model.safetensors").is_file() and not (run / "preprocessor_config.json").exists()
    face = tmp_path / "face.png"
    Image.new("RGB", (48, 48), (120, 90, 80)).save(face)
    capsys.readouterr()
    assert predict_command.main([str(run), str(face)]) == 2
    line = _one_line(capsys, "sspa-predict")
    assert f"{run} is an unfinished training run (run_status.json: interrupted; preprocessor_config.json missing)" in (
        line
    )
    resume = f"sspa-train {run / 'recipe.yaml'} --resume_from_checkpoint true"
    assert resume in line and f"{run / 'checkpoint-'}" in line
    monkeypatch.undo()
    assert train([str(run / "recipe.yaml"), "--resume_from_checkpoint", "true"]) == 0
    assert predict_command.main([str(run), str(face)]) == 0


def test_a_top_k_above_the_number_of_classes_says_so_and_ranks_them_all(setup, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert predict_command.main([str(setup["model"]), str(setup["faces"]), "--top_k", "100", "--output", str(out)]) == 0
    line = _one_line(capsys, predict_command.PROG)
    assert line == "sspa-predict: --top_k 100: the model knows 7 classes; every row ranks all 7", line
    assert out.read_text().splitlines()[0].count("label_") == 7
