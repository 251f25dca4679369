"""Set-up every test needs: no Hub access, this folder on sys.path so that test files import helpers.py, and each
test run in its own empty folder, so that a relative path (a recipe's `output_dir: outputs/quickstart`) never
reaches the checkout's own folders (the quick start leaves outputs/quickstart there; .ci/run runs it first).

Runs before any test module is imported, so HF_HUB_OFFLINE is already set when huggingface_hub reads it. Shared
constants and builders live in helpers.py; a pytest fixture moves here once several test files use it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # the tests never reach the Hub; a missing model fails at once, without retries

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # pytest's default import mode adds it too; --import-mode=importlib does not
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _in_an_empty_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts in a fresh folder of its own (not its tmp_path, which it may expect empty)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
