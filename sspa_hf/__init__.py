"""sspa-hf: SSPA-JT joint training for facial expression recognition on Hugging Face transformers.

Importing the package registers `SSPAConfig` with `AutoConfig`; `SSPAForImageClassification` joins
`AutoModelForImageClassification` when the first `SSPAConfig` is made, which every Auto path does before it looks
the model class up (configuration_sspa.py). Both are marked for `auto_map`, so saved folders also load with
`trust_remote_code=True` where the package is absent.

Everything else (the model, the image processor, `SSPATrainer`, the argument dataclasses, `build_model`,
`load_source`, `build_joint`) is exported lazily (PEP 562): `import sspa_hf` imports no model code, trainer or
`datasets`, so that every command answers --help and refuses bad input before the heavy imports; the first use of
a name imports its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig

from .labels import EXPRESSIONS, ID2LABEL, LABEL2ID
from .model.configuration_sspa import SSPAConfig, resnet18_config

if TYPE_CHECKING:
    from .data import build_joint, load_source
    from .model.modeling_sspa import SSPAForImageClassification, SSPAOutput
    from .model.processing import make_image_processor
    from .training.arguments import DataArguments, ModelArguments, SSPATrainingArguments
    from .training.build import build_model
    from .training.trainer import SSPATrainer

__version__ = "0.1.0"

AutoConfig.register(SSPAConfig.model_type, SSPAConfig, exist_ok=True)
SSPAConfig.register_for_auto_class()

#: Lazily exported name -> the module (relative to this package) that defines it.
_LAZY: dict[str, str] = {
    "SSPAForImageClassification": ".model.modeling_sspa",
    "SSPAOutput": ".model.modeling_sspa",
    "make_image_processor": ".model.processing",
    "SSPATrainer": ".training.trainer",
    "SSPATrainingArguments": ".training.arguments",
    "ModelArguments": ".training.arguments",
    "DataArguments": ".training.arguments",
    "build_model": ".training.build",
    "load_source": ".data",
    "build_joint": ".data",
}

__all__ = [
    "EXPRESSIONS",
    "ID2LABEL",
    "LABEL2ID",
    "DataArguments",
    "ModelArguments",
    "SSPAConfig",
    "SSPAForImageClassification",
    "SSPAOutput",
    "SSPATrainer",
    "SSPATrainingArguments",
    "build_joint",
    "build_model",
    "load_source",
    "make_image_processor",
    "resnet18_config",
]


def __getattr__(name: str) -> Any:
    """Import a lazily exported name on first use (and keep it, so later look-ups are plain attributes)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
