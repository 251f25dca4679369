"""sspa-hf: SSPA-JT joint training for facial expression recognition on Hugging Face transformers.

Importing the package registers `SSPAConfig` / `SSPAForImageClassification` with the Auto classes, and marks
them for `auto_map` so saved folders also load with `trust_remote_code=True` where the package is absent.
"""

from transformers import AutoConfig, AutoModelForImageClassification

from .configuration_sspa import SSPAConfig, resnet18_config
from .labels import EXPRESSIONS, ID2LABEL, LABEL2ID
from .modeling_sspa import SSPAForImageClassification, SSPAOutput
from .processing import make_image_processor

__version__ = "0.1.0"

AutoConfig.register(SSPAConfig.model_type, SSPAConfig, exist_ok=True)
AutoModelForImageClassification.register(SSPAConfig, SSPAForImageClassification, exist_ok=True)
SSPAConfig.register_for_auto_class()
SSPAForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "EXPRESSIONS",
    "ID2LABEL",
    "LABEL2ID",
    "SSPAConfig",
    "SSPAForImageClassification",
    "SSPAOutput",
    "make_image_processor",
    "resnet18_config",
]
