"""Each restoration CNN next to the classical method it should beat, measured one way for the app, the CLI
(`--compare`) and the benchmarks.

A comparison runs in two steps, so a slow classical method never holds the model (the app runs them as separate
events in separate queues)::

    c = compare.denoise(model, image, 25, degrade_first=True)  # degrade (optional), then the CNN
    c.methods += [compare.baseline(c, name) for name in c.baselines]  # "nlm", "bm3d": same input, same sigma
    print(compare.table(c))  # time, and PSNR/SSIM against the clean image when there is one

Everything shown beside a result is computed here once: the degraded input, the sigma the CNN really used (the
baselines get the same), the dilated hole mask (Telea fills the same holes), the metrics. Transparency is kept:
every method runs on the color channels and gets the input's alpha back.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import baselines as classical
from . import degrade, pipelines
from .errors import ImageInputError
from .imageio import merge_alpha, open_image, split_alpha
from .metrics import psnr, ssim
from .runtime import RunInfo

# ----------------------------------------------------------------------------------------------- settings
SEED = 0  # fixed seed of the "degrade, then restore" noise and holes, so runs are comparable
BM3D_MAX_PIXELS = 1_000_000  # BM3D takes tens of seconds per Mpx on a CPU (48 s at 1000x1000 on 2 cores)
BM3D_MIN_SIDE = 16  # bm3d raises below its 8 px block and crashes the whole process (segfault) at exactly 8x8
BASELINES = {"super-resolution": ("bicubic",), "denoising": ("nlm", "bm3d"), "inpainting": ("telea",)}
NAMES = {"bicubic": "PIL bicubic", "nlm": "OpenCV non-local means", "bm3d": "BM3D", "telea": "OpenCV Telea"}


@dataclass
class Method:
    """One row of a comparison: a method's result (None when it was skipped, `note` says why) and its time."""

    name: str
    image: Image.Image | None
    seconds: float | None = None
    note: str = ""


@dataclass
class Comparison:
    """A restoration task run by the CNN, ready for its classical baselines.

    Args:
        task: "super-resolution", "denoising" or "inpainting".
        input: what every method gets (the degraded upload with "degrade, then restore").
        reference: the clean image to measure against, or None.
        cnn: the CNN's result; `methods` starts with it and the baselines are appended.
        info: the pipeline's RunInfo.
        used: the settings the CNN ran with and the baselines reuse: scale (and the downsampler of "degrade,
            then restore"), sigma, mask (the dilated holes).
        lines: what the settings were, in words, for display.
    """

    task: str
    input: Image.Image
    reference: Image.Image | None
    cnn: Method
    info: RunInfo
    used: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)

    @property
    def baselines(self) -> tuple[str, ...]:
        return BASELINES[self.task]

    def summary(self) -> str:
        """RunInfo.summary() and the settings lines, as Markdown."""
        return "\n\n".join([self.info.summary(), *self.lines])


def _cnn(task: str, model: nn.Module, image, reference, info: RunInfo, result: Image.Image, **used) -> Comparison:
    name = f"CNN ({getattr(model, 'model_name', None) or type(model).__name__})"
    cnn = Method(name, result, info.seconds)
    return Comparison(task, image, reference, cnn, info, used=used, methods=[cnn])


# ----------------------------------------------------------------------------------------------- the CNN step
def upscale(model: nn.Module, image: Any, *, degrade_first: bool = False, downsampler: str = "pil-bicubic",
            device: str | torch.device | None = None, precision: str = "auto") -> Comparison:
    """Super-resolve `image`; with `degrade_first` the upload is the clean high-resolution image: cropped to a
    multiple of the model's scale, downscaled by it with `downsampler` (one of `degrade.DOWNSAMPLERS`: PIL bicubic
    by default; OpenCV cubic, linear and area alias, as many real low-res images do), restored, measured on the Y
    channel (scale px border)."""
    image, s, reference = open_image(image), int(model.scale), None
    if degrade_first:
        reference = image.crop((0, 0, image.width // s * s, image.height // s * s))
        try:
            image = degrade.downscale(reference, s, downsampler)
        except ValueError as e:  # an unknown downsampler, an image smaller than the scale
            raise ImageInputError(str(e)) from None
    result, info = pipelines.upscale(model, image, device=device, precision=precision)
    c = _cnn("super-resolution", model, image, reference, info, result, scale=s,
             downsampler=downsampler if degrade_first else None)
    c.lines.append(f"Input {image.width}x{image.height} -> output {result.width}x{result.height} (x{s})"
                   + (f", downscaled from the upload first with {degrade.DOWNSAMPLER_NAMES[downsampler]}."
                      if degrade_first else "."))
    return c


def denoise(model: nn.Module, image: Any, sigma: float | None = None, *, degrade_first: bool = False,
            auto: bool = False, seed: int = SEED, device: str | torch.device | None = None,
            precision: str = "auto") -> Comparison:
    """Denoise `image` at `sigma` (0-255), or at the estimated level with `auto`. With `degrade_first` the upload
    is clean: Gaussian noise of `sigma` (seeded) is added first and the results are measured against the upload."""
    image, reference = open_image(image), None
    if degrade_first:
        if sigma is None:
            raise ImageInputError("'degrade, then restore' needs a noise level to add")
        color, alpha = split_alpha(image)
        reference, image = image, merge_alpha(degrade.add_noise(color, float(sigma), seed), alpha)
    result, info = pipelines.denoise(model, image, None if auto else sigma, device=device, precision=precision)
    used = info.used["sigma"]  # estimated and clamped on auto: the baselines get exactly this
    c = _cnn("denoising", model, image, reference, info, result, sigma=used)
    c.lines.append(f"Noise level used: {used:.1f}" + (" (estimated)" if auto else "")
                   + (f"; noise added: sigma {float(sigma):g}, seed {seed}." if degrade_first else "."))
    return c


def inpaint(model: nn.Module, image: Any, mask: Any = None, *, dilate: int = 0, degrade_first: bool = False,
            seed: int = SEED, device: str | torch.device | None = None, precision: str = "auto") -> Comparison:
    """Fill the holes of `image` (mask white = hole). With `degrade_first` the upload is clean: the mask (random
    strokes and boxes from `seed` when there is none) is punched into it first, and the results are measured
    against the upload."""
    image, reference = open_image(image), None
    if mask is None:
        if not degrade_first:
            raise ImageInputError("no mask was given: mark the holes (white = hole)")
        holes = degrade.random_mask(image.height, image.width, random.Random(seed), coverage=(0.1, 0.25))
        mask = Image.fromarray((holes > 0.5).astype(np.uint8) * 255)
    mask = open_image(mask)
    if degrade_first:
        reference, image = image, punch(image, mask)
    result, info = pipelines.inpaint(model, image, mask, dilate=dilate, device=device, precision=precision)
    holes = info.used["mask"]  # dilated as the CNN filled it: Telea fills the same holes
    c = _cnn("inpainting", model, image, reference, info, result, mask=holes)
    share = float(np.mean(np.asarray(holes) > 127))
    c.lines.append(f"Image {image.width}x{image.height}, {share:.1%} of it to fill"
                   + (f" (holes dilated by {dilate} px)." if dilate else "."))
    return c


def punch(image: Image.Image, mask: Image.Image) -> Image.Image:
    """`image` with its holes painted white (alpha kept), so no method can see the pixels it has to fill."""
    color, alpha = split_alpha(image)
    color = color.copy()
    color.paste(255 if color.mode == "L" else (255, 255, 255), mask=Image.fromarray(
        pipelines.mask_to_holes(mask).astype(np.uint8) * 255))
    return merge_alpha(color, alpha)


# ----------------------------------------------------------------------------------------------- the classical step
def bm3d_refusal(image: Image.Image) -> str:
    """Why BM3D is not run on `image`, or "" when it is."""
    if min(image.size) < BM3D_MIN_SIDE:
        return f"skipped: the image is smaller than {BM3D_MIN_SIDE} px (BM3D's blocks do not fit)"
    if image.width * image.height > BM3D_MAX_PIXELS:
        return (f"skipped: the image is over {BM3D_MAX_PIXELS / 1e6:g} megapixel, where BM3D takes about a minute "
                f"on a CPU; crop it to compare with BM3D")
    return ""


def baseline(c: Comparison, name: str) -> Method:
    """Run classical method `name` (one of `c.baselines`) on the CNN's input with the CNN's settings."""
    color, alpha = split_alpha(c.input)
    if name == "bm3d" and bm3d_refusal(color):
        return Method(NAMES[name], None, None, bm3d_refusal(color))
    start = time.perf_counter()
    if name == "bicubic":
        out = classical.bicubic(color, c.used["scale"])
    elif name in ("nlm", "bm3d"):
        sigma = max(c.used["sigma"], 1.0)  # both need a positive strength
        out = classical.nlm_denoise(color, sigma) if name == "nlm" else classical.bm3d_denoise(color, sigma)
    elif name == "telea":
        out = classical.telea(color, c.used["mask"])
    else:
        raise ValueError(f"unknown baseline {name!r} for {c.task}; one of {c.baselines}")
    return Method(NAMES[name], merge_alpha(out, alpha), time.perf_counter() - start)


def table(c: Comparison, methods: list[Method] | None = None) -> str:
    """Markdown: method, time and (given a clean reference) PSNR / SSIM of each result against it; measured on the
    color channels, for super-resolution on the Y channel with `scale` px of border cropped."""
    ref = split_alpha(c.reference)[0] if c.reference is not None else None
    y, border = c.task == "super-resolution", c.used.get("scale", 0) if c.task == "super-resolution" else 0
    lines = ["| method | time | PSNR (dB) | SSIM |\n|---|---|---|---|" if ref else "| method | time |\n|---|---|"]
    for m in methods if methods is not None else c.methods:
        if m.image is None:
            lines.append(f"| {m.name} | {m.note or 'skipped'} |" + (" - | - |" if ref else ""))
            continue
        t = f"{m.seconds:.2f} s" if m.seconds is not None else "-"
        if ref is None:
            lines.append(f"| {m.name} | {t} |")
            continue
        out = split_alpha(m.image)[0]
        p, s = (f(ref, out, border=border, y_channel=y) for f in (psnr, ssim))
        lines.append(f"| {m.name} | {t} | {p:.2f} | {s:.4f} |")
    if ref is not None:
        lines.append("\nMeasured against the clean upload" + (f" on the Y channel, {border} px border cropped."
                                                                if y else "."))
    return "\n".join(lines)
