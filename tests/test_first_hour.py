"""What a new user meets first (issue 33): a model that predicts one class says so, a run made from Python exports
its selection, and every command answers --help and one-line refusals before transformers' model stack loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import QUICKSTART, TINY_BACKBONE, joint_data, make_trainer

from sspa_hf.evaluation.metrics import classification_metrics, format_summary
from sspa_hf.labels import EXPRESSIONS

# ---- one class for nearly every face --------------------------------------------------------------------------


def _summary(y_pred: list[int], y_true: list[int] | None = None) -> str:
    y_true = list(range(7)) * 10 if y_true is None else y_true
    return format_summary(classification_metrics(y_true, y_pred), list(EXPRESSIONS))


def test_a_model_predicting_one_class_for_nearly_every_face_is_named_in_one_line():
    y_true = list(range(7)) * 10
    nearly_all = [3] * 67 + [0, 1, 2]  # 96 % happiness
    first = _summary(nearly_all, y_true).splitlines()[0]
    assert first.startswith("warning: the model predicts happiness for 96 % of the faces")
    assert "has not learnt" in first and "smaller learning rate" in first and "longer" in first


@pytest.mark.parametrize(
    "y_pred,y_true",
    [
        (list(range(7)) * 10, None),  # every class predicted
        ([3] * 50 + list(range(7)) * 2 + [0, 1, 2, 4, 5, 6], None),  # 73 % one class: skewed, not collapsed
        ([3] * 20, [3] * 20),  # faces all of one class, predicted right
    ],
)
def test_no_warning_for_a_model_that_tells_classes_apart(y_pred, y_true):
    assert not _summary(y_pred, y_true).startswith("warning")


def _one_class_model(folder: Path, label: int) -> None:
    """A tiny saved model whose logits always favour `label` (its experts' bias)."""
    from sspa_hf import SSPAConfig, SSPAForImageClassification, make_image_processor

    torch.manual_seed(0)
    model = SSPAForImageClassification(SSPAConfig(backbone_config=TINY_BACKBONE, image_size=48)).eval()
    with torch.no_grad():
        model.moe.experts.bias.zero_()
        model.moe.experts.bias.view(model.config.num_experts, -1)[:, label] = 100.0
    model.save_pretrained(folder)
    make_image_processor(48).save_pretrained(folder)


def test_sspa_eval_says_when_the_model_predicts_one_class(tmp_path, capsys):
    from sspa_hf.commands.evaluate import main as eval_main

    _one_class_model(tmp_path / "model", label=EXPRESSIONS.index("neutral"))
    assert eval_main([str(tmp_path / "model"), "synthetic:?role=target&n=70", "--output_dir", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr().out
    warnings = [line for line in printed.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "predicts neutral for 100 % of the faces" in warnings[0]
    assert json.loads((tmp_path / "e" / "eval_metrics.json").read_text())["recall/neutral"] == 1.0


def test_sspa_train_end_of_run_report_says_when_the_model_predicts_one_class(tmp_path, capsys):
    from sspa_hf.commands.train import print_summary

    metrics = classification_metrics(list(range(7)) * 10, [3] * 70)
    print_summary(metrics, list(EXPRESSIONS), {}, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("warning: the model predicts happiness for 100 %") for line in lines)


# ---- a run made from Python is a run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def python_run(tmp_path_factory) -> Path:
    """A run folder written by SSPATrainer alone, as the README's "Train from Python" does (no data_args.json)."""
    out = tmp_path_factory.mktemp("python_run")
    train_set, _ = joint_data(70, 70)
    trainer = make_trainer(out, train_set, num_train_epochs=2, selection_epochs=1, per_device_train_batch_size=35)
    trainer.train()
    trainer.save_model()
    return out / "run"


def test_export_selection_of_a_python_run_names_the_flags_it_needs(python_run, tmp_path, capsys):
    from sspa_hf.commands.export_selection import main as export_main

    assert not (python_run / "data_args.json").exists() and (python_run / "selection.parquet").is_file()
    assert export_main([str(python_run), str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "a run made from Python" in line
    assert "--target_dataset SPEC --auxiliary_dataset SPEC" in line and not (tmp_path / "out").exists()


def test_export_selection_of_a_python_run_with_its_data_sets(python_run, tmp_path, capsys):
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    from sspa_hf.commands.export_selection import main as export_main

    specs = ["--target_dataset", "synthetic:?role=target&n=70", "--auxiliary_dataset", "synthetic:?role=auxiliary&n=70"]
    assert export_main([str(python_run), str(tmp_path / "out"), *specs]) == 0
    table = pq.read_table(python_run / "selection.parquet").to_pandas()
    auxiliary = table[~table["is_target"]]
    data = load_from_disk(str(tmp_path / "out"))
    assert list(data["id"]) == list(auxiliary["id"]) and list(data["consistent"]) == list(auxiliary["clean"])
    # another data set than the run's is refused, not mislabelled
    wrong = [*specs[:3], "synthetic:?role=auxiliary&n=90"]
    assert export_main([str(python_run), str(tmp_path / "wrong"), *wrong]) == 2
    assert "changed since the run" in capsys.readouterr().err


# ---- --help and refusals before the model stack -------------------------------------------------------------------

HEAVY = ("transformers.modeling_utils", "transformers.image_processing_utils", "transformers.pipelines", "datasets")


def _heavy_modules_after(module: str, argv: list[str], cwd: Path) -> tuple[int, list[str], str]:
    """Run `module`'s main(argv) in a fresh interpreter, as its console script does: (exit status, the HEAVY modules
    it imported, what it printed on stderr)."""
    script = (
        "import json, sys\n"
        f"from sspa_hf.commands.{module} import main\n"
        "try:\n"
        f"    status = main({argv!r})\n"
        "except SystemExit as exit_:\n"
        "    status = exit_.code\n"
        f"print(json.dumps([status, [name for name in {HEAVY!r} if name in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=300)
    status, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    return status, heavy, done.stderr


@pytest.mark.parametrize("module", ["train", "evaluate", "predict", "export_selection", "export_onnx"])
def test_help_loads_no_model_stack(module, tmp_path):
    status, heavy, _ = _heavy_modules_after(module, ["--help"], tmp_path)
    assert status == 0 and heavy == []


def test_sspa_prepare_help_loads_no_model_stack(tmp_path):
    status, heavy, _ = _heavy_modules_after("prepare", ["--help"], tmp_path)  # its formats come with `datasets`
    assert status == 0 and not set(heavy) - {"datasets"}


@pytest.mark.parametrize(
    "module,make_argv,needle",
    [
        ("train", lambda tmp: [], "give a recipe"),
        ("train", lambda tmp: [QUICKSTART, "--no_such_flag", "1"], "unknown flag --no_such_flag"),
        ("train", lambda tmp: [QUICKSTART, "--ema_momentum", "2"], "ema_momentum must be in [0, 1)"),
        ("evaluate", lambda tmp: [str(tmp / "no_model"), "synthetic:"], "no model folder"),
        ("predict", lambda tmp: [str(tmp / "no_model"), str(tmp / "face.jpg")], "face.jpg not found"),
        ("export_selection", lambda tmp: [str(tmp / "no_run"), str(tmp / "out")], "selection.parquet is missing"),
        ("export_onnx", lambda tmp: [str(tmp / "no_model"), str(tmp / "m.onnx")], "no model folder"),
    ],
)
def test_refusals_load_no_model_stack(module, make_argv, needle, tmp_path):
    status, heavy, err = _heavy_modules_after(module, make_argv(tmp_path), tmp_path)
    assert status == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert heavy == []


def test_the_model_class_registers_on_first_config_and_loads_through_the_auto_class(tmp_path):
    """`import sspa_hf` leaves the model out; a saved folder still loads through AutoModelForImageClassification."""
    _one_class_model(tmp_path / "model", label=3)
    script = (
        "import sys\n"
        "import sspa_hf\n"
        "assert 'sspa_hf.model.modeling_sspa' not in sys.modules and 'transformers.modeling_utils' not in sys.modules\n"
        "from transformers import AutoModelForImageClassification\n"
        f"model = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'model')!r})\n"
        "print(type(model).__module__, type(model).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sspa_hf.model.modeling_sspa", "SSPAForImageClassification"]
