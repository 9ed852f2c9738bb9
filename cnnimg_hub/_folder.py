"""The model folder format, written by `model.save_pretrained(dir)` (PyTorchModelHubMixin) and `save_model`:
exactly ``config.json`` + ``model.safetensors`` + ``README.md``.

The config holds the constructor arguments (that is the config), the provenance keys in `PROVENANCE_KEYS` and the
model's `InferenceSpec`. This module takes a model and writes files; it never talks to the Hub (that is `_hub`),
so the models can use it without importing the Hub client code.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file
from torch import nn

from . import __version__
from ._card import CARD_KEYS, render_card
from ._files import atomic_write
from ._registry import _MODELS
from .errors import ModelLoadError
from .spec import SPEC_KEYS
from .tasks import TASKS

FILES = ("config.json", "model.safetensors", "README.md")
# Config keys that are not constructor arguments: provenance, and the inference spec's fields.
PROVENANCE_KEYS = frozenset({"model_name", "architecture", "library", "library_version", "num_parameters"})
META_KEYS = PROVENANCE_KEYS | SPEC_KEYS
TASK_TAGS = {name: task.pipeline_tag for name, task in TASKS.items()}


def model_name_of(model: nn.Module) -> str:
    """The registered name of `model` (set by create_model), else the first name registered for its class."""
    name = getattr(model, "model_name", None)
    if name:
        return name
    for n, (cls, _) in _MODELS.items():
        if cls is type(model):
            return n
    raise ModelLoadError(f"{type(model).__name__} is not a registered model class")


def build_config(model: nn.Module) -> dict[str, Any]:
    """Constructor arguments (from the mixin) + task and inference settings + provenance."""
    args = dict(model._hub_mixin_config or {})
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}
    meta = {"model_name": model_name_of(model), "architecture": type(model).__name__, "library": "cnnimg-hub",
            "library_version": __version__, "num_parameters": sum(p.numel() for p in model.parameters()),
            **model.inference_spec().to_config()}
    return {**args, **meta}


def weights_metadata(config: dict[str, Any]) -> dict[str, str]:
    """The safetensors header's metadata: what a reader of the file alone needs to know what it holds."""
    return {"format": "pt", "model_name": config["model_name"], "architecture": str(config.get("architecture")),
            "task": str(config.get("task")), "library": "cnnimg-hub",
            "library_version": str(config.get("library_version"))}


# Models whose float32 weights would make a file larger than this are stored in float16 (half the size; the
# Hub's usual way to ship big checkpoints). Loading casts back to the model's float32, and the rounding (relative
# 5e-4) changes the shipped restoration models' PSNR by under 0.001 dB. Smaller models stay float32, bit for bit.
FLOAT16_ABOVE_BYTES = 16 * 2 ** 20
FLOAT16_MAX = 65504.0


def storage_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors written to model.safetensors: float32 ones as float16 when the file would pass
    FLOAT16_ABOVE_BYTES and every value fits float16's range; everything else as it is."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    floats = [v for v in state.values() if v.dtype == torch.float32]
    size = sum(v.numel() * v.element_size() for v in state.values())
    if size > FLOAT16_ABOVE_BYTES and all(v.abs().max() < FLOAT16_MAX for v in floats if v.numel()):
        state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    return state


def write_weights(model: nn.Module, path: Path) -> None:
    state = storage_state(model)
    metadata = weights_metadata(build_config(model))
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def restamp_weights(path: Path, metadata: dict[str, str]) -> None:
    """Replace the metadata in a safetensors file's header; the tensor bytes are copied unchanged."""
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section stays 8-byte aligned, as safetensors writes it
    atomic_write(path, struct.pack("<Q", len(text)) + text + data[8 + n:])


def write_config(model: nn.Module, path: Path) -> None:
    text = json.dumps(build_config(model), indent=2, sort_keys=True) + "\n"
    atomic_write(path, text)


def model_card(model: nn.Module, **card_kwargs: Any) -> ModelCard:
    """The README.md of a model folder (see `_card.render_card` for the keyword arguments; others are ignored)."""
    return ModelCard(render_card(build_config(model), **{k: v for k, v in card_kwargs.items() if k in CARD_KEYS}))
