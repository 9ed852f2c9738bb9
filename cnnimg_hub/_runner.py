"""The restoration runner behind `pipelines`: one call, `restore`, takes a PIL image (and an optional hole mask) and
returns the model's output image and a `RunInfo`. It converts to the model's channel count, pads to the spec's
size multiple, plans tiles, runs with out-of-memory retries and a float32 rerun on NaN/Inf, crops and converts
back. Private: the task functions in `pipelines` are the public face; this module never calls back into them.
"""
from __future__ import annotations

import contextlib
import operator
import time
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from .errors import CnnImgError, ImageInputError
from .imageio import to_image, to_tensor
from .runtime import RunInfo, autocast, compute_dtype, device_name, dtype_name
from .spec import InferenceSpec
from .tiling import pad_to_multiple, tile_count, tiled

MIN_TILE = 32  # the out-of-memory retries stop halving the tile here (smaller tiles are mostly overlap)


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device):
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


def check_int(name: str, value: Any, low: int, high: int) -> int:
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


# ----------------------------------------------------------------------------------------------- one call
def restore(fn: Callable[[torch.Tensor], torch.Tensor], color: Image.Image, spec: InferenceSpec, *, scale: int,
            device: torch.device, tile: int | str | None, precision: str | None, notes: list[str],
            holes: np.ndarray | None = None) -> tuple[Image.Image, RunInfo]:
    """`fn` over the L or RGB image `color` -> (output image in `color`'s mode, RunInfo).

    `holes` (bool, True = hole) travels with the image as one extra channel, so padding and tiling cut both
    identically; `fn` then gets (N, C + 1, H, W). The model must already be on `device` (`on_device`).
    """
    start = time.perf_counter()
    x, back = _to_model(color, spec.channels)
    if holes is not None:
        m = torch.from_numpy(holes.astype(np.float32))[None, None].expand(len(x), 1, -1, -1)
        x = torch.cat([x, m], dim=1)
    multiple, min_size = spec.multiple_of or 1, spec.min_size or 1
    dtype = compute_dtype(precision, device, spec.precision)
    x, (h, w) = pad_to_multiple(x, multiple, min_size)
    planned, overlap = _plan_tiles(tile, spec, tuple(x.shape[-2:]), notes)
    kwargs = dict(overlap=overlap, scale=scale, multiple=multiple, min_size=min_size, device=device, tile_arg=tile,
                  notes=notes)
    out, used = _run_with_retries(fn, x, tile=planned, dtype=dtype, **kwargs)
    if dtype != torch.float32 and not torch.isfinite(out).all():
        # fp16 overflows (max 65504) in some activations of some models; float32 is always safe, only slower.
        notes.append(f"{dtype_name(dtype)} produced NaN/Inf; reran in float32")
        dtype = torch.float32
        out, used = _run_with_retries(fn, x, tile=used, dtype=dtype, **kwargs)
    tiles = tile_count(tuple(x.shape[-2:]), used, overlap, multiple) if used else 1
    image = back(out[..., :h * scale, :w * scale])
    info = RunInfo(device=device_name(device), dtype=dtype_name(dtype), tiled=used is not None, tiles=tiles,
                   tile_size=used, seconds=time.perf_counter() - start, notes=notes)
    return image, info


def _to_model(color: Image.Image, channels: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], Image.Image]]:
    """Tensor in the model's channel count, and the function that turns the output back into `color`'s mode.

    Gray into an RGB model: replicated to 3 channels, the output converted back to L (ITU-R 601 luma).
    Color into a gray model: each channel is processed as its own gray image (a batch of 3).
    """
    if channels not in (1, 3):
        raise CnnImgError(f"models with {channels} input channels are not supported by the pipelines (1 or 3)")
    # the output tensors are the runner's own, so to_image may round them in place (overwrite)
    if channels == 3:
        x = to_tensor(color.convert("RGB"))
        return x, (lambda y: to_image(y, overwrite=True).convert(color.mode))
    x = to_tensor(color)
    if color.mode == "L":
        return x, (lambda y: to_image(y, overwrite=True))
    return x.permute(1, 0, 2, 3), (lambda y: to_image(y.permute(1, 0, 2, 3), overwrite=True))


# ----------------------------------------------------------------------------------------------- tiles and retries
def _is_oom(e: BaseException) -> bool:
    # CUDA says "out of memory"; PyTorch's CPU allocator says "DefaultCPUAllocator: can't allocate memory".
    return isinstance(e, torch.cuda.OutOfMemoryError) or (isinstance(e, RuntimeError) and any(
        m in str(e).lower() for m in ("out of memory", "can't allocate memory")))


def _min_tile(overlap: int, multiple: int, min_size: int) -> int:
    # tiled() needs tile >= 2 * overlap; below MIN_TILE a tile is mostly overlap and the retries are pointless.
    n = max(MIN_TILE, 2 * overlap, min_size)
    return -(-n // multiple) * multiple


def _plan_tiles(tile: int | str | None, spec: InferenceSpec, size: tuple[int, int],
                notes: list[str]) -> tuple[int | None, int]:
    """(tile side or None for one pass, overlap) for a padded image of `size`."""
    overlap, multiple = spec.tile_overlap or 0, spec.multiple_of or 1
    if tile is None or (isinstance(tile, str) and tile.lower() == "none"):
        return None, overlap
    if isinstance(tile, str):
        if tile.lower() != "auto":
            raise ImageInputError(f"tile must be 'auto', None (never tile) or a size in pixels, got {tile!r}")
        tile = spec.tile_size
        if not tile:  # the model gives no tile advice: run it in one pass
            return None, overlap
    tile = check_int("tile", tile, 1, 1 << 30)
    floor = _min_tile(overlap, multiple, spec.min_size or 1)
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
    Looked up at call time, so tests can replace `_runner._run` (inject NaN, raise out-of-memory) on a CPU."""
    def call(t: torch.Tensor) -> torch.Tensor:
        with autocast(device, dtype):
            y = fn(t.to(device).contiguous(memory_format=torch.channels_last))
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
