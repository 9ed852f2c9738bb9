"""The base every model family derives from: `nn.Module` + `PyTorchModelHubMixin`.

Architectures stay in their own files; what the mixin writes (weights, config, card) is delegated to `_hub`, so
`model.save_pretrained(dir)` and `model.push_to_hub(repo)` produce exactly config.json + model.safetensors +
README.md with the enriched config and our model card.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn


class HubModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="cnnimg-hub",
    repo_url="https://github.com/cnnimg-hub/cnnimg-hub",
    license="mit",
):
    """Common base. Subclasses set ``task`` and may extend ``inference_config``."""

    task: str = ""

    def inference_config(self) -> dict[str, Any]:
        """What a consumer needs to feed the model, written into config.json next to the init arguments."""
        return {}

    # --- Hub plumbing (kept in _hub.py; imported lazily to avoid an import cycle)
    def save_pretrained(self, save_directory, **kwargs):  # type: ignore[override]
        # The mixin keeps an existing README.md; a re-save must refresh the card with the new results.
        (Path(save_directory) / "README.md").unlink(missing_ok=True)
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        from .._hub import write_config, write_weights

        write_weights(self, Path(save_directory) / "model.safetensors")
        write_config(self, Path(save_directory) / "config.json")

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        from .._hub import model_card

        return model_card(self, **kwargs)
