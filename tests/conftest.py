"""Set-up every test needs: no Hub access, and this folder on sys.path so that test files import helpers.py.

Runs before any test module is imported, so HF_HUB_OFFLINE is already set when huggingface_hub reads it. Shared
constants and builders live in helpers.py; a pytest fixture moves here once several test files use it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # the tests never reach the Hub; a missing model fails at once, without retries

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # pytest's default import mode adds it too; --import-mode=importlib does not
    sys.path.insert(0, HERE)
