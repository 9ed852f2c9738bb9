"""One function per task: PIL images (or paths, bytes, arrays) in, PIL images and a `RunInfo` out.

The app and the CLI call these and nothing lower. Each function opens its input through `imageio.open_image`,
feeds the model what its config asks for (color mode, size multiple, minimum size, tile advice), runs under
`torch.inference_mode` on the chosen device and precision, and hands back images of the input's mode: gray stays
gray, an alpha channel is set aside and re-attached. Restoration tasks tile large images (see `tiling`), fall
back to float32 when half precision overflows, and retry with smaller tiles when the device runs out of memory.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import maximum_filter
from torch import nn

from ._runner import MIN_TILE, check_int, on_device, restore
from .errors import ImageInputError
from .imageio import merge_alpha, open_image, split_alpha, to_image, to_tensor
from .runtime import PRECISIONS, RunInfo, autocast, compute_dtype, device_name, dtype_name, select_device
from .spec import spec_of

__all__ = ["classify", "classify_batch", "classifier_input", "generate", "generate_batch", "interpolate", "upscale",
           "estimate_sigma", "denoise", "mask_to_holes", "inpaint", "select_device", "RunInfo", "MAX_GENERATE",
           "MIN_TILE", "PRECISIONS"]

# ----------------------------------------------------------------------------------------------- limits
MAX_GENERATE = 64  # images per generate/interpolate call: a 64-image grid is already a wall


# ----------------------------------------------------------------------------------------------- inputs
def _open(image: Any, what: str = "image") -> Image.Image:
    if image is None:
        raise ImageInputError(f"no {what} was given")
    return open_image(image)


# ----------------------------------------------------------------------------------------------- classification
def classify(model: nn.Module, image: Any, *, top_k: int = 5, device: str | torch.device | None = None,
             precision: str = "auto") -> tuple[list[tuple[str, float]], RunInfo]:
    """The `top_k` most probable labels of `image`, most probable first.

    Args:
        model: an "image-classification" model (ResNetClassifier, AirbenchNet).
        image: PIL image, path, bytes, file object or numpy array (see `open_image`).
        top_k: how many (label, probability) pairs to return, clipped to the number of classes. Default 5.
        device: see `select_device`. Default None (auto).
        precision: "auto" (bf16 on a CPU with native bf16 when the model's config says its accuracy holds in
            bf16, float32 otherwise, CUDA included), "fp32", "fp16" or "bf16". Default "auto".

    See `classifier_input`: the image is resized so its shorter side is the model's `image_size`, center-cropped to a square,
    and converted to the model's color mode; transparency is composited over white. Probabilities are a softmax
    over all classes (they sum to 1 over all classes, not over the top k).
    """
    return classify_batch(model, [image], top_k=top_k, device=device, precision=precision)[0]


def classify_batch(model: nn.Module, images: list[Any], *, top_k: int = 5, device: str | torch.device | None = None,
                   precision: str = "auto") -> list[tuple[list[tuple[str, float]], RunInfo]]:
    """`classify` of each image in `images`, in one model call (the app batches concurrent requests with it).
    Each image gets the result a call of its own gives (up to float rounding) and its own notes."""
    start = time.perf_counter()
    top_k = check_int("top_k", top_k, 1, 1 << 30)
    dev = select_device(device)
    if not images:
        return []
    seen = [classifier_input(model, image) for image in images]
    dtype = compute_dtype(precision, dev, spec_of(model).precision, cuda_auto=torch.float32)
    with on_device(model, dev), autocast(dev, dtype):
        x = torch.cat([to_tensor(color) for color, _ in seen]).to(dev)
        probs = torch.softmax(model(x).float(), dim=1).cpu()
    labels = list(getattr(model, "label_names", None) or getattr(model, "config", {}).get("label_names") or [])
    if len(labels) != probs.shape[1]:
        labels = [f"class_{i}" for i in range(probs.shape[1])]
    seconds, out = time.perf_counter() - start, []
    for p, (color, notes) in zip(probs, seen):
        if top_k > len(p):
            notes.append(f"top_k {top_k} clipped to the {len(p)} classes")
        values, indices = p.topk(min(top_k, len(p)))
        result = [(labels[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]
        out.append((result, RunInfo(device=device_name(dev), dtype=dtype_name(dtype), seconds=seconds, notes=notes,
                                    used={"input": color})))  # what the model saw (`classifier_input`)
    return out


def classifier_input(model: nn.Module, image: Any) -> tuple[Image.Image, list[str]]:
    """The image the classifier really sees, and notes on the conversions: transparency composited over white,
    the spec's color mode, the shorter side resized to the spec's size (its interpolation, bicubic by default)
    and a center crop to a square."""
    spec, notes = spec_of(model, "image-classification"), []
    color, alpha = split_alpha(_open(image))
    if alpha is not None:
        background = Image.new(color.mode, color.size, 255)
        color = Image.composite(color, background, alpha)
        notes.append("transparent pixels composited over white")
    mode = spec.color_mode or "RGB"
    if color.mode != mode:
        color = color.convert(mode)
        notes.append(f"converted to {mode} for this model")
    size = spec.input_size[-1] if spec.input_size else int(model.image_size)
    w, h = color.size
    ratio = size / min(w, h)
    new_w, new_h = max(size, round(w * ratio)), max(size, round(h * ratio))
    color = color.resize((new_w, new_h), Image.BILINEAR if spec.interpolation == "bilinear" else Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return color.crop((left, top, left + size, top + size)), notes


# ----------------------------------------------------------------------------------------------- generation
def _seed(name: str, seed: Any) -> int:
    return check_int(name, seed, 0, 2 ** 63 - 1)


def _class(model: nn.Module, class_index: Any) -> int:
    return check_int(f"class_index (0 to {model.num_classes - 1}: {', '.join(model.label_names)})", class_index, 0,
                model.num_classes - 1)


def generate(model: nn.Module, class_index: int, num_images: int = 8, seed: int = 0, *,
             device: str | torch.device | None = None, precision: str = "auto") -> tuple[list[Image.Image], RunInfo]:
    """`num_images` samples of class `class_index`.

    Args:
        model: an "image-generation" model (ConditionalGenerator or ConditionalVAE).
        class_index: the class, 0 to num_classes - 1 (model.label_names names them).
        num_images: 1 to MAX_GENERATE (64). Default 8.
        seed: 0 to 2**63 - 1. The latents are drawn on the CPU from torch.Generator().manual_seed(seed), so the
            same seed gives the same images on every device. Default 0.
        device: see `select_device`. Default None (auto).
        precision: as for `classify`. Default "auto".
    """
    return generate_batch(model, [(class_index, num_images, seed)], device=device, precision=precision)[0]


def generate_batch(model: nn.Module, requests: list[tuple[int, int, int]], *,
                   device: str | torch.device | None = None,
                   precision: str = "auto") -> list[tuple[list[Image.Image], RunInfo]]:
    """`generate` for each (class_index, num_images, seed) in `requests`, decoded in one model call (the app
    batches concurrent requests with it): each request's latents come from its own seed, so its images are the
    ones a call of its own gives (up to float rounding)."""
    spec = spec_of(model, "image-generation")
    start = time.perf_counter()
    checked = [(_class(model, c), _seed("seed", seed), check_int("num_images", n, 1, MAX_GENERATE))
               for c, n, seed in requests]
    checked = [(c, n, seed) for c, seed, n in checked]
    dev = select_device(device)
    if not checked:
        return []
    dtype = compute_dtype(precision, dev, spec.precision, cuda_auto=torch.float32)
    with on_device(model, dev):
        z = torch.cat([model.sample_latent(n, torch.Generator().manual_seed(seed)) for _, n, seed in checked])
        labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n, _ in checked]).to(dev)
        with autocast(dev, dtype):
            images = model.decode_latent(z.to(dev), labels).float().cpu()
    info = dict(device=device_name(dev), dtype=dtype_name(dtype), seconds=time.perf_counter() - start)
    parts = images.split([n for _, n, _ in checked])
    return [([to_image(t) for t in part], RunInfo(**info)) for part in parts]


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents): the path stays at the typical norm of
    Gaussian latents instead of cutting through the low-norm middle like a straight line."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1, 1)
    omega = torch.arccos(cos)
    if torch.sin(omega) < 1e-6:  # (anti)parallel: the sphere formula divides by ~0; a line is the same path
        return torch.lerp(a[None], b[None], t[:, None])
    return (torch.sin((1 - t)[:, None] * omega) * a + torch.sin(t[:, None] * omega) * b) / torch.sin(omega)


def interpolate(model: nn.Module, class_index: int, seed_a: int, seed_b: int, steps: int = 8, *,
                method: str = "slerp", device: str | torch.device | None = None,
                precision: str = "auto") -> tuple[list[Image.Image], RunInfo]:
    """Images along the path between the latents of `seed_a` and `seed_b`, both ends included.

    Args:
        model: an "image-generation" model.
        class_index: the class, 0 to num_classes - 1.
        seed_a, seed_b: seeds of the two ends; the first image equals generate(..., num_images=1, seed=seed_a).
        steps: number of images, 2 to MAX_GENERATE (64). Default 8.
        method: "slerp" (spherical) or "lerp" (straight line). Default "slerp".
        device: see `select_device`. Default None (auto).
        precision: as for `classify`. Default "auto".
    """
    spec = spec_of(model, "image-generation")
    start = time.perf_counter()
    class_index, seed_a, seed_b = _class(model, class_index), _seed("seed_a", seed_a), _seed("seed_b", seed_b)
    steps = check_int("steps", steps, 2, MAX_GENERATE)
    if method not in ("slerp", "lerp"):
        raise ImageInputError(f"method must be 'slerp' or 'lerp', got {method!r}")
    dev = select_device(device)
    dtype = compute_dtype(precision, dev, spec.precision, cuda_auto=torch.float32)
    with on_device(model, dev):
        za = model.sample_latent(1, torch.Generator().manual_seed(seed_a))[0].float().cpu()
        zb = model.sample_latent(1, torch.Generator().manual_seed(seed_b))[0].float().cpu()
        t = torch.linspace(0, 1, steps)
        z = _slerp(za, zb, t) if method == "slerp" else torch.lerp(za[None], zb[None], t[:, None])
        labels = torch.full((steps,), class_index, dtype=torch.long, device=dev)
        with autocast(dev, dtype):
            images = model.decode_latent(z.to(dev), labels).float().cpu()
    info = RunInfo(device=device_name(dev), dtype=dtype_name(dtype), seconds=time.perf_counter() - start)
    return [to_image(im) for im in images], info


# ----------------------------------------------------------------------------------------------- restoration
def upscale(model: nn.Module, image: Any, *, device: str | torch.device | None = None,
            tile: int | str | None = "auto", precision: str = "auto") -> tuple[Image.Image, RunInfo]:
    """Super-resolve `image` by the model's `scale`.

    Args:
        model: a "super-resolution" model (ESPCN, EDSR).
        image: PIL image, path, bytes, file object or numpy array (see `open_image`).
        device: see `select_device`. Default None (auto).
        tile: "auto" uses the model's tile_size/tile_overlap when the image is larger than a tile; None never
            tiles; an int is the tile side in input pixels. Default "auto".
        precision: "auto" (float16 on CUDA; bfloat16 on a CPU with native bf16 when the model's config says its
            quality holds in bf16, see `InferenceSpec.precision`; float32 otherwise), "fp32", "fp16" or "bf16".
            Default "auto".

    Returns an image of the input's mode; an alpha channel is upscaled with bicubic.
    """
    spec, dev = spec_of(model, "super-resolution"), select_device(device)
    color, alpha = split_alpha(_open(image))
    with on_device(model, dev):
        out, info = restore(model, color, spec, scale=int(model.scale), device=dev, tile=tile, precision=precision,
                            notes=[])
    return merge_alpha(out, alpha), info


def estimate_sigma(image: Any) -> float:
    """Standard deviation of additive white Gaussian noise in `image`, on the 0-255 scale.

    Donoho & Johnstone (1994): the finest diagonal (HH) Haar wavelet coefficients of a natural image are almost
    all noise, and the median absolute value of N(0, s^2) samples is 0.6745 s, so s = median(|HH|) / 0.6745.
    The median ignores the few large coefficients at edges. Averaged over color channels (alpha ignored).
    Images smaller than 2x2 are refused: there is nothing to measure, pass sigma yourself.
    """
    color, _ = split_alpha(_open(image))
    a = np.asarray(color, dtype=np.float64)
    a = a[:, :, None] if a.ndim == 2 else a
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    if h == 0 or w == 0:
        raise ImageInputError(f"a {color.width}x{color.height} image is too small to estimate its noise; give "
                              f"sigma explicitly")
    a = a[:h, :w]
    # Orthonormal Haar HH of each 2x2 block: (a - b - c + d) / 2 has the same std as the pixel noise.
    hh = (a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) / 2.0
    return float(np.mean([np.median(np.abs(hh[:, :, c])) / 0.6745 for c in range(hh.shape[2])]))


def denoise(model: nn.Module, image: Any, sigma: float | None = None, *, device: str | torch.device | None = None,
            tile: int | str | None = "auto", precision: str = "auto") -> tuple[Image.Image, RunInfo]:
    """Remove additive white Gaussian noise of std `sigma` (0-255 scale) from `image`.

    Args:
        model: a "denoising" model (UNetDenoiser, FFDNet).
        image: PIL image, path, bytes, file object or numpy array (see `open_image`).
        sigma: the noise level, 0 to the model's max_sigma; None estimates it with `estimate_sigma` (the estimate
            is in info.notes; an estimate above max_sigma is lowered to it, with a note). Default None.
        device, tile, precision: as for `upscale`.

    Returns an image of the input's mode; an alpha channel passes through unchanged.
    """
    spec, dev, notes = spec_of(model, "denoising"), select_device(device), []
    max_sigma = float(spec.max_sigma or model.max_sigma)
    color, alpha = split_alpha(_open(image))
    if sigma is None:
        sigma = estimate_sigma(color)
        notes.append(f"estimated noise sigma {sigma:.1f} (0-255 scale)")
        if sigma > max_sigma:
            notes.append(f"the estimate is above the model's max_sigma {max_sigma:g}; used {max_sigma:g}")
            sigma = max_sigma
    else:
        try:
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise ImageInputError(f"sigma must be a number on the 0-255 scale, got {sigma!r}") from None
        if not (math.isfinite(sigma) and 0 <= sigma <= max_sigma):
            raise ImageInputError(f"sigma must be between 0 and {max_sigma:g} (this model's max_sigma, 0-255 "
                                  f"scale), got {sigma}; omit it to estimate the noise level")
    with on_device(model, dev):
        out, info = restore(lambda t: model(t, sigma), color, spec, scale=1, device=dev, tile=tile,
                            precision=precision, notes=notes)
    info.used["sigma"] = float(sigma)
    return merge_alpha(out, alpha), info


def mask_to_holes(mask: Image.Image) -> np.ndarray:
    """A mask image -> bool array, True = hole. White/nonzero is a hole, thresholded at 50%.

    L and RGB masks use their luminance. With transparency (LA, RGBA): when the color is all black and the
    alpha is not fully opaque, the strokes are in the alpha channel, so alpha is used; otherwise the luminance
    times alpha (a fully transparent pixel is never a hole, whatever color it hides).
    """
    color, alpha = split_alpha(mask)
    value = np.asarray(color.convert("L"), dtype=np.float64)
    if alpha is not None:
        a = np.asarray(alpha, dtype=np.float64)
        value = a if (not np.asarray(color).any() and a.min() < 255) else value * a / 255.0
    return value > 127.5


def inpaint(model: nn.Module, image: Any, mask: Any, *, dilate: int = 0, device: str | torch.device | None = None,
            tile: int | str | None = "auto", precision: str = "auto") -> tuple[Image.Image, RunInfo]:
    """Fill the holes of `image` marked by `mask`.

    Args:
        model: an "inpainting" model (GatedUNet).
        image: PIL image, path, bytes, file object or numpy array (see `open_image`).
        mask: the same kinds of input, the same size as the image; white (nonzero above 50%) = hole. See
            `mask_to_holes` for masks with transparency.
        dilate: grow the holes by this many pixels (a square max filter), to cover object borders. Default 0.
        device, tile, precision: as for `upscale`.

    Pixels outside the (dilated) mask are exactly the input's. An empty mask returns the input unchanged, with
    a note. An alpha channel passes through unchanged.
    """
    spec = spec_of(model, "inpainting")
    start = time.perf_counter()
    dev = select_device(device)
    img, mask_img = _open(image), _open(mask, "mask")
    if mask_img.size != img.size:
        raise ImageInputError(f"the mask is {mask_img.width}x{mask_img.height} but the image is "
                              f"{img.width}x{img.height}; they must be the same size")
    dilate = check_int("dilate", dilate, 0, 1 << 16)
    holes = mask_to_holes(mask_img)
    if dilate:
        holes = maximum_filter(holes, size=2 * dilate + 1)
    hole_mask = Image.fromarray(holes.astype(np.uint8) * 255)
    if not holes.any():
        return img, RunInfo(device=device_name(dev), dtype="float32", tiles=0, seconds=time.perf_counter() - start,
                            notes=["the mask is empty: nothing to inpaint, the image is returned unchanged"],
                            used={"mask": hole_mask})
    color, alpha = split_alpha(img)
    with on_device(model, dev):
        out, info = restore(lambda t: model(t[:, :-1], t[:, -1:]), color, spec, scale=1, device=dev, tile=tile,
                            precision=precision, notes=[], holes=holes)
    # The model composites already, but half precision and 8-bit rounding must not move a single known pixel.
    result = Image.composite(out, color, hole_mask)
    info.seconds = time.perf_counter() - start
    info.used["mask"] = hole_mask  # the holes as filled (dilated): baselines and displays take this one
    return merge_alpha(result, alpha), info
