"""The one task table: every place that names a task (registry, model cards, pipelines, CLI, app tabs, benchmarks)
reads it from here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A task cnnimg-hub models are made for.

    Args:
        name: the value of `task` in config.json and of a model class's `task`, e.g. "super-resolution".
        key: the short name: CLI command, app tab id and API endpoint, e.g. "upscale".
        title: the app tab's title, e.g. "Super-resolve".
        pipeline_tag: the Hugging Face Hub pipeline tag of the model card, e.g. "image-to-image".
        restores: True for the image-to-image tasks the app compares with a classical method.
    """

    name: str
    key: str
    title: str
    pipeline_tag: str
    restores: bool = False


CLASSIFY = Task("image-classification", "classify", "Classify", "image-classification")
GENERATE = Task("image-generation", "generate", "Generate", "unconditional-image-generation")
UPSCALE = Task("super-resolution", "upscale", "Super-resolve", "image-to-image", restores=True)
INPAINT = Task("inpainting", "inpaint", "Inpaint", "image-to-image", restores=True)
DENOISE = Task("denoising", "denoise", "Denoise", "image-to-image", restores=True)

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFY, GENERATE, UPSCALE, INPAINT, DENOISE)}
BY_KEY: dict[str, Task] = {t.key: t for t in TASKS.values()}
