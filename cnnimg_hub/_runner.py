"""The restoration runner behind `pipelines`: devices and precision, model facts from config.json, inputs in the
model's channel count, and `_restore` (pad, plan tiles, run with out-of-memory retries and a float32 rerun on
NaN/Inf, crop).

Private: `pipelines` is the public face and re-exports `RunInfo`, `select_device`, `MIN_TILE` and `PRECISIONS`.
Kept apart so `pipelines.py` reads as the tasks alone.
"""
from __future__ import annotations

import contextlib
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from PIL import Image
from torch import nn

from .errors import CnnImgError, ImageInputError, WrongTaskError
from .imageio import to_image, to_tensor
from .tiling import pad_to_multiple, tile_count, tiled

# ----------------------------------------------------------------------------------------------- limits
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
        used: the task settings the model really ran with, e.g. {"sigma": 25.0} for denoising (after estimation
            and clamping), so a caller shows and reuses exactly that value instead of recomputing it.
    """

    device: str
    dtype: str
    tiled: bool = False
    tiles: int = 1
    tile_size: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    used: dict[str, Any] = field(default_factory=dict)

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
    # channels_last: 1.3-2x faster convolutions on this CPU for every shipped model (benchmarks' roofline
    # variants), and the layout tensor cores want on CUDA; the weights' values are unchanged.
    model.to(device, memory_format=torch.channels_last).eval()
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


def _to_model(color: Image.Image, channels: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], Image.Image]]:
    """Tensor in the model's channel count, and the function that turns the output back into `color`'s mode.

    Gray into an RGB model: replicated to 3 channels, the output converted back to L (ITU-R 601 luma).
    Color into a gray model: each channel is processed as its own gray image (a batch of 3).
    """
    # the output tensors are the pipelines' own, so to_image may round them in place (overwrite)
    if channels == 3:
        x = to_tensor(color.convert("RGB"))
        return x, (lambda y: to_image(y, overwrite=True).convert(color.mode))
    x = to_tensor(color)
    if color.mode == "L":
        return x, (lambda y: to_image(y, overwrite=True))
    return x.permute(1, 0, 2, 3), (lambda y: to_image(y.permute(1, 0, 2, 3), overwrite=True))


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

    The task functions hand `pipelines._run` to `_restore` at call time, so tests can replace it there (inject NaN,
    raise out-of-memory) on a CPU.
    """
    autocast = (contextlib.nullcontext() if dtype == torch.float32
                else torch.autocast(device_type=device.type, dtype=dtype))

    def call(t: torch.Tensor) -> torch.Tensor:
        with autocast:
            y = fn(t.to(device).contiguous(memory_format=torch.channels_last))
        return y.float().to(x.device)

    if tile is None:
        return call(x)
    return tiled(call, x, tile=tile, overlap=overlap, scale=scale, multiple_of=multiple_of)


def _run_with_retries(run, fn, x, *, tile, overlap, scale, multiple, min_size, device, dtype, tile_arg,
                      notes) -> tuple[torch.Tensor, int | None]:
    """`run` (`_run`), halving the tile after each out-of-memory error down to `_min_tile`; returns (output, tile)."""
    while True:
        try:
            return run(fn, x, tile=tile, overlap=overlap, scale=scale, multiple_of=multiple, device=device,
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
             notes: list[str], run: Callable[..., torch.Tensor] = _run) -> tuple[torch.Tensor, RunInfo]:
    """Pad, plan tiles, run (with OOM retries and a float32 rerun on NaN/Inf), crop. x: (N, C, H, W) on CPU.

    `run` does each pass; `_run` unless a caller passes its own (`pipelines` passes whatever `pipelines._run` is).
    """
    start = time.perf_counter()
    multiple, min_size = int(config.get("multiple_of") or 1), int(config.get("min_size") or 1)
    dtype = _dtype(precision, device)
    x, (h, w) = pad_to_multiple(x, multiple, min_size)
    planned, overlap = _plan_tiles(tile, config, tuple(x.shape[-2:]), notes)
    kwargs = dict(overlap=overlap, scale=scale, multiple=multiple, min_size=min_size, device=device, tile_arg=tile,
                  notes=notes)
    out, used = _run_with_retries(run, fn, x, tile=planned, dtype=dtype, **kwargs)
    if dtype != torch.float32 and not torch.isfinite(out).all():
        # fp16 overflows (max 65504) in some activations of some models; float32 is always safe, only slower.
        notes.append(f"{_dtype_name(dtype)} produced NaN/Inf; reran in float32")
        dtype = torch.float32
        out, used = _run_with_retries(run, fn, x, tile=used, dtype=dtype, **kwargs)
    tiles = tile_count(tuple(x.shape[-2:]), used, overlap, multiple) if used else 1
    info = RunInfo(device=_device_name(device), dtype=_dtype_name(dtype), tiled=used is not None, tiles=tiles,
                   tile_size=used, seconds=time.perf_counter() - start, notes=notes)
    return out[..., :h * scale, :w * scale], info
