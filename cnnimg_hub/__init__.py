"""cnnimg-hub: small CNNs for classic image tasks, packaged as safetensors for the Hugging Face Hub."""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  (registers every model family)
from ._hub import load_model, push_to_hub, save_model  # noqa: E402
from ._registry import create_model, list_models  # noqa: E402
from .errors import CnnImgError  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "load_model", "save_model", "push_to_hub", "CnnImgError"]
