"""The typed inference spec: what a consumer needs to feed a model, written into config.json next to the
constructor arguments (like timm's PretrainedCfg). Every model fills one; the pipelines, the app and the evaluation
read its fields, never free config keys.

A loaded model's spec is read back from its config.json (`InferenceSpec.from_config`), so folders written before
this class existed load unchanged: their inference keys are exactly these fields.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from .errors import WrongTaskError
from .tasks import TASKS


@dataclass(frozen=True)
class InferenceSpec:
    """How to run a model. Fields a task does not use stay None and are not written to config.json.

    Args:
        task: one of `tasks.TASKS`, e.g. "denoising".
        color_mode: "RGB" or "L" (gray): the channels the model takes or makes. Default None (RGB).
        input_range: value range of the input tensor, e.g. [0, 1]. Default None.
        input_size: [C, H, W] a classifier takes (resize the shorter side to H, center-crop). Default None.
        interpolation: the classifier's resize filter, "bicubic" or "bilinear". Default None (bicubic).
        crop: the classifier's crop, "center". Default None.
        output: what the classifier returns, "logits". Default None.
        output_size: [C, H, W] a generator makes. Default None.
        output_range: value range of a generator's images, e.g. [0, 1]. Default None.
        latent_dim: a generator's latent size. Default None.
        kind: a generator's kind, "gan" or "vae". Default None.
        min_size: smallest input side the restoration model runs on (smaller inputs are padded). Default None (1).
        multiple_of: input sides must be multiples of this (inputs are padded). Default None (1).
        tile_size: advised tile side in input pixels for large images; None never tiles. Default None.
        tile_overlap: overlap of neighbouring tiles in input pixels. Default None (0).
        mask_convention: an inpainter's mask meaning, "1 = hole (pixels to fill), 0 = known". Default None.
        noise: the noise a denoiser removes, "additive white Gaussian". Default None.
        sigma_scale: the scale of the denoiser's sigma, 255. Default None.
        max_sigma: the largest noise level the denoiser was trained for (0-255 scale). Default None.
        precision: what precision "auto" runs the model in on a CPU with native bf16: "bf16" when its quality
            change in bf16 was measured within the tolerance on its validation set (0.05 dB PSNR, 0.1 point of
            accuracy), else "fp32". Written by `python -m benchmarks.precision --write FOLDER` into config.json
            only (new weights need a new measurement, so a model saved again leaves it out). Default None (not
            measured: fp32).
        precision_check: that measurement: {"metric", "fp32", "bf16", "change", "tolerance", "data"}. Default
            None.
    """

    task: str
    color_mode: str | None = None
    input_range: list[float] | None = None
    input_size: list[int] | None = None
    interpolation: str | None = None
    crop: str | None = None
    output: str | None = None
    output_size: list[int] | None = None
    output_range: list[float] | None = None
    latent_dim: int | None = None
    kind: str | None = None
    min_size: int | None = None
    multiple_of: int | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None
    mask_convention: str | None = None
    noise: str | None = None
    sigma_scale: int | None = None
    max_sigma: float | None = None
    precision: str | None = None
    precision_check: dict[str, Any] | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        if self.precision not in (None, "fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")

    @property
    def channels(self) -> int:
        """1 for gray models, 3 for color ones."""
        return 1 if self.color_mode == "L" else 3

    def to_config(self) -> dict[str, Any]:
        """The config.json entries: every field that is set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "InferenceSpec":
        """The spec in a config.json dict (its other keys, the constructor arguments and provenance, ignored)."""
        return cls(**{k: config[k] for k in SPEC_KEYS if k in config})


SPEC_KEYS = frozenset(f.name for f in dataclasses.fields(InferenceSpec))


def spec_of(model: nn.Module, task: str | None = None) -> InferenceSpec:
    """The spec of `model`: from its config.json when it was loaded, else from the model itself. With `task`,
    a model of another task is a WrongTaskError."""
    if task is not None and getattr(model, "task", None) != task:
        raise WrongTaskError(f"this pipeline needs a {task!r} model, got a {getattr(model, 'task', None)!r} model "
                             f"({type(model).__name__}); load one with load_model(..., task={task!r})")
    config = getattr(model, "config", None)
    return InferenceSpec.from_config(config) if isinstance(config, dict) else model.inference_spec()
