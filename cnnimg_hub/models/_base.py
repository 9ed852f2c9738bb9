"""The base every model family derives from: `nn.Module` + `PyTorchModelHubMixin`.

Architectures stay in their own files; what the mixin writes (weights, config, card) comes from `_folder`, so
`model.save_pretrained(dir)` and `model.push_to_hub(repo)` produce exactly config.json + model.safetensors +
README.md with the enriched config and our model card. The Hub client code (`_hub`) is never imported here.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn

from .._folder import model_card, write_config, write_weights
from ..spec import InferenceSpec


class HubModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="cnnimg-hub",
    repo_url="https://github.com/cnnimg-hub/cnnimg-hub",
    license="mit",
):
    """Common base. Subclasses set ``task`` and return their ``inference_spec``."""

    task: str = ""

    def inference_spec(self) -> InferenceSpec:
        """What a consumer needs to feed the model, written into config.json next to the init arguments."""
        return InferenceSpec(self.task)

    # --- what the mixin writes
    def save_pretrained(self, save_directory, **kwargs):  # type: ignore[override]
        """Write the folder through a temp folder beside it, then move each file into place: a crash part-way
        leaves the previous model intact (the mixin alone deletes config.json first and keeps a stale card)."""
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", target.name)
        with tempfile.TemporaryDirectory(dir=target, prefix=".saving-") as tmp:
            result = super().save_pretrained(tmp, **kwargs)
            for path in Path(tmp).iterdir():
                os.replace(path, target / path.name)
        return result

    def _save_pretrained(self, save_directory: Path) -> None:
        write_weights(self, Path(save_directory) / "model.safetensors")
        write_config(self, Path(save_directory) / "config.json")

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        return model_card(self, **kwargs)
