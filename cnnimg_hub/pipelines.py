"""One function per task: PIL images (or paths, bytes, arrays) in, PIL images and a `RunInfo` out.

The app and the CLI call these and nothing lower. Each function opens its input through `imageio.open_image`,
feeds the model what its config asks for (color mode, size multiple, minimum size, tile advice), runs under
`torch.inference_mode` on the chosen device and precision, and hands back images of the input's mode: gray stays
gray, an alpha channel is set aside and re-attached. Restoration tasks tile large images (see `tiling`), fall
back to float32 when half precision overflows, and retry with smaller tiles when the device runs out of memory.
"""
from __future__ import annotations

import contextlib
import math
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import maximum_filter
from torch import nn

from .errors import CnnImgError, ImageInputError, WrongTaskError
from .imageio import merge_alpha, open_image, split_alpha, to_image, to_tensor
from .tiling import pad_to_multiple, tile_starts, tiled

# ----------------------------------------------------------------------------------------------- limits
MAX_GENERATE = 64  # images per generate/interpolate call: a 64-image grid is already a wall
MIN_TILE = 32  # the out-of-memory retries stop halving the tile here (smaller tiles are mostly overlap)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class RunInfo:
    """How a pipeline call ran; the app and the CLI show `summary()`.

    Args:
        device: where the model ran, e.g. "cpu", "cuda:0".
        dtype: the compute precision in the end: "float32", "float16" or "bfloat16".
        tiled: whether the image was processed in tiles.
        tiles: number of model calls (1 when not tiled).
        tile_size: tile side in input pixels, None when not tiled.
        seconds: wall-clock time of the call.
        notes: anything the caller should know (estimated sigma, fallbacks, retries, conversions).
    """

    device: str
    dtype: str
    tiled: bool = False
    tiles: int = 1
    tile_size: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """e.g. "cpu · float32 · 4 tiles of 256 px · 0.42 s", followed by the notes."""
        parts = [self.device, self.dtype]
        if self.tiled:
            parts.append(f"{self.tiles} tiles of {self.tile_size} px")
        parts.append(f"{self.seconds:.2f} s")
        return " · ".join(parts + self.notes)


# ----------------------------------------------------------------------------------------------- devices
def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def select_device(preference: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    Args:
        preference: None or "auto" picks CUDA, then MPS (Apple), then CPU. "cpu", "cuda", "cuda:N" and "mps"
            force that device and raise CnnImgError when it is not available. Default None.
    """
    text = str(preference).strip().lower() if preference is not None else "auto"
    if text in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise CnnImgError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CnnImgError(f"device {preference!r} was asked for but CUDA is not available (no NVIDIA GPU, or a "
                              f"CPU-only PyTorch); use device 'cpu' or 'auto'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CnnImgError(f"device {preference!r} does not exist: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise CnnImgError(f"device {preference!r} was asked for but MPS (Apple GPU) is not available; use "
                              f"device 'cpu' or 'auto'")
        return device
    raise CnnImgError(f"device type {device.type!r} is not supported; use auto, cpu, cuda, cuda:N or mps")


def _device_name(device: torch.device) -> str:
    return f"cuda:{torch.cuda.current_device() if device.index is None else device.index}" \
        if device.type == "cuda" else device.type


@contextlib.contextmanager
def _on(model: nn.Module, device: torch.device):
    """Model on `device` in eval mode under inference_mode; its train/eval flag is restored afterwards, so a
    pipeline call in the middle of training does not switch the caller's model to eval for good."""
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _dtype(precision: str | None, device: torch.device) -> torch.dtype:
    text = (precision or "auto").lower()
    if text == "auto":
        # Half precision halves memory and is 2-8x faster on GPUs; on CPUs it is slower, so float32 there.
        return torch.float16 if device.type == "cuda" else torch.float32
    if text not in PRECISIONS:
        raise ImageInputError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    return PRECISIONS[text]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------------------------- model facts
def _config(model: nn.Module) -> dict[str, Any]:
    """config.json's content: `model.config` after load_model, rebuilt the same way for a created model."""
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        return config
    from ._hub import build_config  # lazy: keeps the Hub client out of `import cnnimg_hub.pipelines` paths

    return build_config(model)


def _check_task(model: nn.Module, task: str) -> None:
    if getattr(model, "task", None) != task:
        raise WrongTaskError(f"this pipeline needs a {task!r} model, got a {getattr(model, 'task', None)!r} model "
                             f"({type(model).__name__}); load one with load_model(..., task={task!r})")


def _channels(config: dict[str, Any]) -> int:
    channels = int(config.get("in_channels") or (1 if config.get("color_mode") == "L" else 3))
    if channels not in (1, 3):
        raise CnnImgError(f"models with {channels} input channels are not supported by the pipelines (1 or 3)")
    return channels


def _open(image: Any, what: str = "image") -> Image.Image:
    if image is None:
        raise ImageInputError(f"no {what} was given")
    return open_image(image)


def _to_model(color: Image.Image, channels: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], Image.Image]]:
    """Tensor in the model's channel count, and the function that turns the output back into `color`'s mode.

    Gray into an RGB model: replicated to 3 channels, the output converted back to L (ITU-R 601 luma).
    Color into a gray model: each channel is processed as its own gray image (a batch of 3).
    """
    if channels == 3:
        x = to_tensor(color.convert("RGB"))
        return x, (lambda y: to_image(y).convert(color.mode))
    x = to_tensor(color)
    if color.mode == "L":
        return x, to_image
    return x.permute(1, 0, 2, 3), (lambda y: to_image(y.permute(1, 0, 2, 3)))


def _int(name: str, value: Any, low: int, high: int) -> int:
    """An integer parameter in [low, high], else ImageInputError. Whole floats (8.0, from UI sliders) are taken;
    bools and fractional floats are refused, not rounded."""
    if isinstance(value, bool):
        raise ImageInputError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        value = operator.index(value)
    except TypeError:
        raise ImageInputError(f"{name} must be an integer, got {value!r}") from None
    if not low <= value <= high:
        raise ImageInputError(f"{name} must be between {low} and {high}, got {value}")
    return value


# ----------------------------------------------------------------------------------------------- running
def _is_oom(e: BaseException) -> bool:
    # CUDA says "out of memory"; PyTorch's CPU allocator says "DefaultCPUAllocator: can't allocate memory".
    return isinstance(e, torch.cuda.OutOfMemoryError) or (isinstance(e, RuntimeError) and any(
        m in str(e).lower() for m in ("out of memory", "can't allocate memory")))


def _min_tile(overlap: int, multiple: int, min_size: int) -> int:
    # tiled() needs tile >= 2 * overlap; below MIN_TILE a tile is mostly overlap and the retries are pointless.
    n = max(MIN_TILE, 2 * overlap, min_size)
    return -(-n // multiple) * multiple


def _plan_tiles(tile: int | str | None, config: dict[str, Any], size: tuple[int, int],
                notes: list[str]) -> tuple[int | None, int]:
    """(tile side or None for one pass, overlap) for a padded image of `size`."""
    overlap, multiple = int(config.get("tile_overlap") or 0), int(config.get("multiple_of") or 1)
    if tile is None or (isinstance(tile, str) and tile.lower() == "none"):
        return None, overlap
    if isinstance(tile, str):
        if tile.lower() != "auto":
            raise ImageInputError(f"tile must be 'auto', None (never tile) or a size in pixels, got {tile!r}")
        tile = config.get("tile_size")
        if not tile:  # the model gives no tile advice: run it in one pass
            return None, overlap
    tile = _int("tile", tile, 1, 1 << 30)
    floor = _min_tile(overlap, multiple, int(config.get("min_size") or 1))
    if tile < floor:
        raise ImageInputError(f"tile {tile} is too small for this model: use at least {floor} px (twice its "
                              f"overlap of {overlap} px, a multiple of {multiple}), or tile=None")
    if tile % multiple:
        notes.append(f"tile {tile} rounded down to {tile // multiple * multiple}, a multiple of {multiple}")
        tile = tile // multiple * multiple
    return (tile if max(size) > tile else None), overlap


def _run(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int | None, overlap: int,
         scale: int, multiple_of: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One pass (or one tiled pass) of `fn` over the padded CPU tensor `x`; returns float32 on the CPU.

    Kept as a module-level function so tests can replace it (inject NaN, raise out-of-memory) on a CPU.
    """
    autocast = (contextlib.nullcontext() if dtype == torch.float32
                else torch.autocast(device_type=device.type, dtype=dtype))

    def call(t: torch.Tensor) -> torch.Tensor:
        with autocast:
            y = fn(t.to(device))
        return y.float().to(x.device)

    if tile is None:
        return call(x)
    return tiled(call, x, tile=tile, overlap=overlap, scale=scale, multiple_of=multiple_of)


def _run_with_retries(fn, x, *, tile, overlap, scale, multiple, min_size, device, dtype, tile_arg,
                      notes) -> tuple[torch.Tensor, int | None]:
    """`_run`, halving the tile after each out-of-memory error down to `_min_tile`; returns (output, tile)."""
    while True:
        try:
            return _run(fn, x, tile=tile, overlap=overlap, scale=scale, multiple_of=multiple, device=device,
                        dtype=dtype), tile
        except RuntimeError as e:
            if not _is_oom(e):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            what = f"{tile} px tiles" if tile else f"a {x.shape[-1]}x{x.shape[-2]} image in one pass"
            if tile_arg is None or (isinstance(tile_arg, str) and tile_arg.lower() == "none"):
                raise CnnImgError(f"{device} ran out of memory on {what} and tiling is off (tile=None); pass "
                                  f"tile='auto' or a size like 256, or use a smaller image or the CPU") from None
            smaller = (tile or max(x.shape[-2:])) // 2 // multiple * multiple
            floor = _min_tile(overlap, multiple, min_size)
            if smaller < floor:
                raise CnnImgError(f"{device} ran out of memory even on {what} ({floor} px is the smallest tile "
                                  f"for this model); free GPU memory, use precision fp16, or device cpu") from None
            notes.append(f"out of memory on {what}; retried with {smaller} px tiles")
            tile = smaller


def _restore(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, scale: int, config: dict[str, Any],
             device: torch.device, tile: int | str | None, precision: str | None,
             notes: list[str]) -> tuple[torch.Tensor, RunInfo]:
    """Pad, plan tiles, run (with OOM retries and a float32 rerun on NaN/Inf), crop. x: (N, C, H, W) on CPU."""
    start = time.perf_counter()
    multiple, min_size = int(config.get("multiple_of") or 1), int(config.get("min_size") or 1)
    dtype = _dtype(precision, device)
    x, (h, w) = pad_to_multiple(x, multiple, min_size)
    planned, overlap = _plan_tiles(tile, config, tuple(x.shape[-2:]), notes)
    kwargs = dict(overlap=overlap, scale=scale, multiple=multiple, min_size=min_size, device=device, tile_arg=tile,
                  notes=notes)
    out, used = _run_with_retries(fn, x, tile=planned, dtype=dtype, **kwargs)
    if dtype != torch.float32 and not torch.isfinite(out).all():
        # fp16 overflows (max 65504) in some activations of some models; float32 is always safe, only slower.
        notes.append(f"{_dtype_name(dtype)} produced NaN/Inf; reran in float32")
        dtype = torch.float32
        out, used = _run_with_retries(fn, x, tile=used, dtype=dtype, **kwargs)
    tiles = (len(tile_starts(x.shape[-2], used, overlap, multiple)) * len(tile_starts(x.shape[-1], used, overlap,
                                                                                        multiple))) if used else 1
    info = RunInfo(device=_device_name(device), dtype=_dtype_name(dtype), tiled=used is not None, tiles=tiles,
                   tile_size=used, seconds=time.perf_counter() - start, notes=notes)
    return out[..., :h * scale, :w * scale], info


# ----------------------------------------------------------------------------------------------- classification
def classify(model: nn.Module, image: Any, *, top_k: int = 5,
             device: str | torch.device | None = None) -> tuple[list[tuple[str, float]], RunInfo]:
    """The `top_k` most probable labels of `image`, most probable first.

    Args:
        model: an "image-classification" model (ResNetClassifier).
        image: PIL image, path, bytes, file object or numpy array (see `open_image`).
        top_k: how many (label, probability) pairs to return, clipped to the number of classes. Default 5.
        device: see `select_device`. Default None (auto).

    The image is resized (bicubic) so its shorter side is the model's `image_size`, center-cropped to a square,
    and converted to the model's color mode; transparency is composited over white. Probabilities are a softmax
    over all classes (they sum to 1 over all classes, not over the top k).
    """
    _check_task(model, "image-classification")
    start, notes = time.perf_counter(), []
    top_k = _int("top_k", top_k, 1, 1 << 30)
    config, dev = _config(model), select_device(device)
    img = _open(image)
    color, alpha = split_alpha(img)
    if alpha is not None:
        background = Image.new(color.mode, color.size, 255)
        color = Image.composite(color, background, alpha)
        notes.append("transparent pixels composited over white")
    mode = config.get("color_mode") or ("L" if config.get("in_channels") == 1 else "RGB")
    if color.mode != mode:
        color = color.convert(mode)
        notes.append(f"converted to {mode} for this model")
    size = int(model.image_size)
    w, h = color.size
    ratio = size / min(w, h)
    new_w, new_h = max(size, round(w * ratio)), max(size, round(h * ratio))
    color = color.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    color = color.crop((left, top, left + size, top + size))
    with _on(model, dev):
        probs = torch.softmax(model(to_tensor(color).to(dev)).float(), dim=1)[0].cpu()
    labels = list(getattr(model, "label_names", None) or config.get("label_names") or [])
    if len(labels) != len(probs):
        labels = [f"class_{i}" for i in range(len(probs))]
    if top_k > len(probs):
        notes.append(f"top_k {top_k} clipped to the {len(probs)} classes")
    values, indices = probs.topk(min(top_k, len(probs)))
    result = [(labels[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]
    info = RunInfo(device=_device_name(dev), dtype="float32", seconds=time.perf_counter() - start, notes=notes)
    return result, info


# ----------------------------------------------------------------------------------------------- generation
def _seed(name: str, seed: Any) -> int:
    return _int(name, seed, 0, 2 ** 63 - 1)


def _class(model: nn.Module, class_index: Any) -> int:
    return _int(f"class_index (0 to {model.num_classes - 1}: {', '.join(model.label_names)})", class_index, 0,
                model.num_classes - 1)


def generate(model: nn.Module, class_index: int, num_images: int = 8, seed: int = 0, *,
             device: str | torch.device | None = None) -> tuple[list[Image.Image], RunInfo]:
    """`num_images` samples of class `class_index`.

    Args:
        model: an "image-generation" model (ConditionalGenerator or ConditionalVAE).
        class_index: the class, 0 to num_classes - 1 (model.label_names names them).
        num_images: 1 to MAX_GENERATE (64). Default 8.
        seed: 0 to 2**63 - 1. The latents are drawn on the CPU from torch.Generator().manual_seed(seed), so the
            same seed gives the same images on every device. Default 0.
        device: see `select_device`. Default None (auto).
    """
    _check_task(model, "image-generation")
    start = time.perf_counter()
    class_index, seed = _class(model, class_index), _seed("seed", seed)
    num_images = _int("num_images", num_images, 1, MAX_GENERATE)
    dev = select_device(device)
    with _on(model, dev):
        labels = torch.full((num_images,), class_index, dtype=torch.long)
        images = model.generate(labels, generator=torch.Generator().manual_seed(seed)).float().cpu()
    info = RunInfo(device=_device_name(dev), dtype="float32", seconds=time.perf_counter() - start)
    return [to_image(t) for t in images], info


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents): the path stays at the typical norm of
    Gaussian latents instead of cutting through the low-norm middle like a straight line."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1, 1)
    omega = torch.arccos(cos)
    if torch.sin(omega) < 1e-6:  # (anti)parallel: the sphere formula divides by ~0; a line is the same path
        return torch.lerp(a[None], b[None], t[:, None])
    return (torch.sin((1 - t)[:, None] * omega) * a + torch.sin(t[:, None] * omega) * b) / torch.sin(omega)


def interpolate(model: nn.Module, class_index: int, seed_a: int, seed_b: int, steps: int = 8, *,
                method: str = "slerp", device: str | torch.device | None = None) -> tuple[list[Image.Image], RunInfo]:
    """Images along the path between the latents of `seed_a` and `seed_b`, both ends included.

    Args:
        model: an "image-generation" model.
        class_index: the class, 0 to num_classes - 1.
        seed_a, seed_b: seeds of the two ends; the first image equals generate(..., num_images=1, seed=seed_a).
        steps: number of images, 2 to MAX_GENERATE (64). Default 8.
        method: "slerp" (spherical) or "lerp" (straight line). Default "slerp".
        device: see `select_device`. Default None (auto).
    """
    _check_task(model, "image-generation")
    start = time.perf_counter()
    class_index, seed_a, seed_b = _class(model, class_index), _seed("seed_a", seed_a), _seed("seed_b", seed_b)
    steps = _int("steps", steps, 2, MAX_GENERATE)
    if method not in ("slerp", "lerp"):
        raise ImageInputError(f"method must be 'slerp' or 'lerp', got {method!r}")
    dev = select_device(device)
    with _on(model, dev):
        za = model.sample_latent(1, torch.Generator().manual_seed(seed_a))[0].float().cpu()
        zb = model.sample_latent(1, torch.Generator().manual_seed(seed_b))[0].float().cpu()
        t = torch.linspace(0, 1, steps)
        z = _slerp(za, zb, t) if method == "slerp" else torch.lerp(za[None], zb[None], t[:, None])
        labels = torch.full((steps,), class_index, dtype=torch.long, device=dev)
        images = model.decode_latent(z.to(dev), labels).float().cpu()
    info = RunInfo(device=_device_name(dev), dtype="float32", seconds=time.perf_counter() - start)
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
        precision: "auto" (float16 on CUDA, float32 elsewhere), "fp32", "fp16" or "bf16". Default "auto".

    Returns an image of the input's mode; an alpha channel is upscaled with bicubic.
    """
    _check_task(model, "super-resolution")
    config, dev = _config(model), select_device(device)
    color, alpha = split_alpha(_open(image))
    x, back = _to_model(color, _channels(config))
    with _on(model, dev):
        out, info = _restore(model, x, scale=int(model.scale), config=config, device=dev, tile=tile,
                             precision=precision, notes=[])
    return merge_alpha(back(out), alpha), info


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
        model: a "denoising" model (FFDNet).
        image: PIL image, path, bytes, file object or numpy array (see `open_image`).
        sigma: the noise level, 0 to the model's max_sigma; None estimates it with `estimate_sigma` (the estimate
            is in info.notes; an estimate above max_sigma is lowered to it, with a note). Default None.
        device, tile, precision: as for `upscale`.

    Returns an image of the input's mode; an alpha channel passes through unchanged.
    """
    _check_task(model, "denoising")
    config, dev, notes = _config(model), select_device(device), []
    max_sigma = float(config.get("max_sigma") or model.max_sigma)
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
    x, back = _to_model(color, _channels(config))
    with _on(model, dev):
        out, info = _restore(lambda t: model(t, sigma), x, scale=1, config=config, device=dev, tile=tile,
                             precision=precision, notes=notes)
    return merge_alpha(back(out), alpha), info


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
    _check_task(model, "inpainting")
    start = time.perf_counter()
    config, dev = _config(model), select_device(device)
    img, mask_img = _open(image), _open(mask, "mask")
    if mask_img.size != img.size:
        raise ImageInputError(f"the mask is {mask_img.width}x{mask_img.height} but the image is "
                              f"{img.width}x{img.height}; they must be the same size")
    dilate = _int("dilate", dilate, 0, 1 << 16)
    holes = mask_to_holes(mask_img)
    if dilate:
        holes = maximum_filter(holes, size=2 * dilate + 1)
    if not holes.any():
        return img, RunInfo(device=_device_name(dev), dtype="float32", tiles=0, seconds=time.perf_counter() - start,
                            notes=["the mask is empty: nothing to inpaint, the image is returned unchanged"])
    color, alpha = split_alpha(img)
    x, back = _to_model(color, _channels(config))
    m = torch.from_numpy(holes.astype(np.float32))[None, None].expand(len(x), 1, -1, -1)
    # Image and mask travel together as one tensor, so padding and tiling cut them identically.
    with _on(model, dev):
        out, info = _restore(lambda t: model(t[:, :-1], t[:, -1:]), torch.cat([x, m], dim=1), scale=1,
                             config=config, device=dev, tile=tile, precision=precision, notes=[])
    hole_mask = Image.fromarray(holes.astype(np.uint8) * 255)
    # The model composites already, but half precision and 8-bit rounding must not move a single known pixel.
    result = Image.composite(back(out), color, hole_mask)
    info.seconds = time.perf_counter() - start
    return merge_alpha(result, alpha), info
