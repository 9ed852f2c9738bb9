"""Padding to a model's size constraints, and tiled inference with seamless blending.

`tiled` runs a fully convolutional model on overlapping tiles so that memory holds one tile's activations at a
time, and blends the tiles with a window that is zero near a tile's inner edges (where zero padding makes its
output wrong) and ramps linearly across the middle of the overlap. Tile positions are multiples of the model's
`multiple_of`, so strided or pixel-unshuffled models see the same pixel grid as in one untiled pass.

Exactness: a tile contributes nothing within ``overlap // 4`` input pixels of an inner edge, so the tiled result
equals the untiled one (to float rounding) when the model's receptive-field radius is at most ``overlap // 4``.
Models that see further give slightly different tiles; the ramp then hides the seam.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom and right so H and W are multiples of `multiple` and at least `min_size`.

    Args:
        x: the batch to pad.
        multiple: H and W are padded up to a multiple of this. 1 = no constraint.
        min_size: H and W are padded up to at least this (then to the multiple). Default 1.

    Reflect padding keeps the statistics of the border (no black frame for the model to react to); when a side
    is too short to reflect (pad >= size, e.g. a 1x1 image), that side is replicated instead.
    Returns (padded, (H, W)) with the original size, to crop the output back with.
    """
    if multiple < 1 or min_size < 1:
        raise ValueError(f"multiple ({multiple}) and min_size ({min_size}) must be >= 1")
    h, w = x.shape[-2:]
    ph = _round_up(max(h, min_size), multiple) - h
    pw = _round_up(max(w, min_size), multiple) - w
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    return x, (h, w)


def tile_layout(length: int, tile: int, overlap: int, multiple_of: int = 1) -> tuple[int, list[int]]:
    """(tile side, start offsets) of the tiles along one side of `length` (already a multiple of `multiple_of`).

    One tile of `length` when `length <= tile`. Otherwise the fewest tiles of at most `tile` that overlap their
    neighbours by at least `overlap`, all of one size (a multiple of `multiple_of`) and evenly spaced. Evenly
    sized tiles do the least work: 1024 px in tiles of up to 512 with overlap 12 are 3 tiles of 350 (1050 px of
    model work), where full 512 px tiles with the last one shifted inward would be 3 tiles of 512 (1536 px).
    """
    if length <= tile:
        return length, [0]
    if (tile - overlap) // multiple_of < 1:
        raise ValueError(f"tile ({tile}) minus overlap ({overlap}) must be at least multiple_of ({multiple_of})")
    n = -(-(length - overlap) // (tile - overlap))  # >= 2, since length > tile
    while True:
        size = _round_up(-(-(length + (n - 1) * overlap) // n), multiple_of)
        while size <= tile:
            starts = [round(i * (length - size) / (n - 1) / multiple_of) * multiple_of for i in range(n)]
            if all(b - a <= size - overlap for a, b in zip(starts, starts[1:])):
                return size, starts
            size += multiple_of  # rounding the starts to the multiple widened a gap
        n += 1


def tile_count(shape: tuple[int, int], tile: int, overlap: int, multiple_of: int = 1) -> int:
    """How many tiles `tiled` uses for an (H, W) input already padded to `multiple_of`."""
    return len(tile_layout(shape[0], tile, overlap, multiple_of)[1]) * len(tile_layout(shape[1], tile, overlap,
                                                                                      multiple_of)[1])


def _window(size: int, at_start: bool, at_end: bool, overlap: int, scale: int) -> torch.Tensor:
    """1-D blending weights of a tile of `size` output pixels; `at_start`/`at_end` = that side is an inner edge."""
    w = torch.ones(size)
    margin, ramp = (overlap // 4) * scale, (overlap - 2 * (overlap // 4)) * scale
    rising = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)  # strictly inside (0, 1)
    if at_start:
        w[:margin] = 0
        w[margin:margin + ramp] = rising
    if at_end:
        w[size - margin:] = 0
        w[size - margin - ramp:size - margin] = torch.minimum(w[size - margin - ramp:size - margin], rising.flip(0))
    return w


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int, overlap: int, scale: int = 1,
          multiple_of: int = 1) -> torch.Tensor:
    """Run `fn` on overlapping tiles of `x` and blend the outputs into one image.

    Args:
        fn: the model call, (N, C, th, tw) -> (N, C', th * scale, tw * scale); it may move tiles to another
            device, but must return them on x's device (the accumulation buffers live there).
        x: the input batch (N, C, H, W), usually N = 1.
        tile: tile side in input pixels, rounded down to a multiple of `multiple_of`; at least 2 * overlap.
        overlap: pixels neighbouring tiles share (at least); see the module docstring for exactness.
        scale: output pixels per input pixel (the SR factor). Default 1.
        multiple_of: the model needs H and W to be multiples of this. The whole input is reflect-padded to it
            once, tiles start on multiples of it, and the output is cropped back. Default 1.

    With `tile` >= the image's size this is exactly one call of `fn` (plus padding and crop).
    """
    tile = tile // multiple_of * multiple_of
    if tile < 1 or overlap < 0 or 2 * overlap > tile:
        raise ValueError(f"need 0 <= 2 * overlap ({overlap}) <= tile ({tile}, rounded down to a multiple of "
                         f"{multiple_of}); use a larger tile or a smaller overlap")
    x, (h, w) = pad_to_multiple(x, multiple_of)
    H, W = x.shape[-2:]
    (th, ys), (tw, xs) = tile_layout(H, tile, overlap, multiple_of), tile_layout(W, tile, overlap, multiple_of)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)[..., :h * scale, :w * scale]
    out = None
    # The blending weight of a pixel is the sum over tiles of wy[y] * wx[x]; the tiles form a grid, so that sum
    # is (sum of the row windows)[y] * (sum of the column windows)[x]: two 1-D sums, not an image-sized buffer.
    row_sum = torch.zeros(H * scale, device=x.device)
    col_sum = torch.zeros(W * scale, device=x.device)
    for i, y0 in enumerate(ys):
        wy = _window(th * scale, y0 > 0, y0 + th < H, overlap, scale)
        row_sum[y0 * scale:(y0 + th) * scale] += wy
        for x0 in xs:
            y = fn(x[..., y0:y0 + th, x0:x0 + tw])
            if y.shape[-2:] != (th * scale, tw * scale):
                raise ValueError(f"fn returned a {tuple(y.shape[-2:])} tile for a {(th, tw)} input; expected "
                                 f"scale={scale} times the input")
            if out is None:  # sized from the first output: fn decides the channels
                dtype = torch.promote_types(y.dtype, torch.float32)  # never accumulate in half precision
                # in the tiles' memory layout (channels_last from the pipelines), so adding a tile is no transpose
                layout = torch.channels_last if y.is_contiguous(memory_format=torch.channels_last) and y.dim() == 4 \
                    else torch.contiguous_format
                out = torch.empty(*y.shape[:2], H * scale, W * scale, dtype=dtype, device=x.device,
                                  memory_format=layout).zero_()
            wx = _window(tw * scale, x0 > 0, x0 + tw < W, overlap, scale)
            if i == 0:
                col_sum[x0 * scale:(x0 + tw) * scale] += wx
            wt = (wy[:, None] * wx[None, :]).to(dtype=out.dtype, device=x.device)
            out[..., y0 * scale:(y0 + th) * scale, x0 * scale:(x0 + tw) * scale] += y * wt
    out.div_(row_sum.to(out.dtype)[:, None]).div_(col_sum.to(out.dtype))
    return out[..., :h * scale, :w * scale]
