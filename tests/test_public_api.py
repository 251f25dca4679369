"""The public API: `from sspa_hf import ...` through lazy exports, a light `import sspa_hf`, shipped type hints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sspa_hf

ROOT = Path(__file__).resolve().parent.parent
LAZY = {
    "SSPATrainer": "sspa_hf.training.trainer",
    "SSPATrainingArguments": "sspa_hf.training.arguments",
    "ModelArguments": "sspa_hf.training.arguments",
    "DataArguments": "sspa_hf.training.arguments",
    "build_model": "sspa_hf.training.build",
    "load_source": "sspa_hf.data.sources",
    "build_joint": "sspa_hf.data.joint",
    "SSPAForImageClassification": "sspa_hf.model.modeling_sspa",
    "SSPAOutput": "sspa_hf.model.modeling_sspa",
    "make_image_processor": "sspa_hf.model.processing",
}


def _modules_after(code: str) -> list[str]:
    """The module names in sys.modules after running `code` in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_sspa_hf_is_light() -> None:
    """No model, trainer, arguments or `datasets`: the model class joins the Auto classes with the first SSPAConfig
    (test_auto_classes_still_registered), so transformers' PreTrainedModel stack waits until a model is needed."""
    modules = set(_modules_after("import sspa_hf"))
    heavy = {
        "sspa_hf.training.trainer",
        "sspa_hf.training.arguments",
        "sspa_hf.training.build",
        "sspa_hf.data",
        "datasets",
        "pandas",
    }
    heavy |= {"sspa_hf.model.modeling_sspa", "transformers.modeling_utils", "transformers.image_processing_utils"}
    assert not heavy & modules, sorted(heavy & modules)


def test_run_folder_names_import_nothing_heavy() -> None:
    modules = set(_modules_after("import sspa_hf.run.folder"))
    assert (
        not {"sspa_hf.training.selection", "sspa_hf.modes.crossfit", "sspa_hf.training.trainer", "pandas", "pyarrow"}
        & modules
    )


@pytest.mark.parametrize("name", sorted(LAZY))
def test_lazy_name_resolves_to_its_definition(name: str) -> None:
    value = getattr(sspa_hf, name)
    assert value.__module__ == LAZY[name]
    assert value is getattr(sys.modules[LAZY[name]], name)


def test_from_import_and_dir() -> None:
    from sspa_hf import SSPATrainer, SSPATrainingArguments, build_joint  # noqa: F401

    assert set(sspa_hf.__all__) <= set(dir(sspa_hf))
    assert set(LAZY) <= set(sspa_hf.__all__)
    assert all(getattr(sspa_hf, name) is not None for name in sspa_hf.__all__)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'SSPATrainr'"):
        sspa_hf.SSPATrainr  # noqa: B018


def test_auto_classes_still_registered() -> None:
    from transformers import AutoConfig, AutoModelForImageClassification

    config = AutoConfig.for_model("sspa")
    assert isinstance(config, sspa_hf.SSPAConfig)
    assert AutoModelForImageClassification._model_mapping[sspa_hf.SSPAConfig] is sspa_hf.SSPAForImageClassification


def test_the_wheel_ships_every_package_file(tmp_path) -> None:
    """A wheel built from a copy of the project (as pip builds it) holds every file of the package: py.typed (type
    hints for users), the model card template, the `evaluate` metric module and every module."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "sspa_hf", source / "sspa_hf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = f"from setuptools import build_meta; build_meta.build_wheel({str(tmp_path / 'dist')!r})"
    done = subprocess.run([sys.executable, "-c", build], cwd=source, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    files = {p.relative_to(source).as_posix() for p in (source / "sspa_hf").rglob("*") if p.is_file()}
    assert "sspa_hf/py.typed" in files and any(name.endswith("modelcard_template.md") for name in files)
    assert files <= shipped, sorted(files - shipped)


def test_run_folder_names_each_file_once_and_lists_it() -> None:
    """Each name is defined in run_folder alone (a quoted copy elsewhere in sspa_hf would drift) and its
    docstring's table lists every file."""
    from sspa_hf.run import folder as run_folder

    names = {
        name: value
        for name, value in vars(run_folder).items()
        if name.isupper() and isinstance(value, str) and "." in value
    }
    assert {"RECIPE", "RUN_STATUS", "LOCK", "STAGING", "SELECTION_STATE", "BAD_IMAGES_REPORT", "CROSSFIT_PROBS"} <= set(
        names
    )
    for name, value in names.items():
        assert f"`{value}" in run_folder.__doc__ and f"({name})" in run_folder.__doc__, name
    moved = (
        "RECIPE",
        "DATA_ARGS",
        "RUN_STATUS",
        "LOCK",
        "STAGING",
        "SELECTION_STATE",
        "BAD_IMAGES_REPORT",
        "CROSSFIT_PROBS",
    )
    copies = [
        f"{path.relative_to(ROOT)}: {names[name]}"
        for path in (ROOT / "sspa_hf").rglob("*.py")
        if path.resolve() != Path(run_folder.__file__).resolve()
        for name in moved
        if f'"{names[name]}"' in path.read_text()
    ]
    assert not copies, copies
