"""Safe image loading and the PIL <-> tensor conversions every pipeline uses.

`open_image` is the one door images come in through (paths, bytes, file objects, numpy arrays, PIL images). It
refuses what it cannot process faithfully -- empty files, non-images, truncated files, files or pixel counts over
the limits (checked from the header, before anything is decoded) -- with an `ImageInputError` that says what to
do, and it returns every image in one of four modes: L, LA, RGB or RGBA, upright (EXIF orientation applied).
"""
from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ._files import atomic_write
from .errors import CnnImgError, ImageInputError

try:  # Intel ISA-L's deflate (x86-64 and ARM): level 1 ran 4x faster than zlib's Z_RLE here, files 3% smaller
    from isal import isal_zlib
except ImportError:  # a platform without its wheel: zlib
    isal_zlib = None

# ----------------------------------------------------------------------------------------------- limits
DEFAULT_MAX_PIXELS = 40_000_000  # 40 Mpx: a 4x upscale of it is already 640 Mpx of output
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # 50 MB: larger files are almost never photos we should process here
MODES = ("L", "LA", "RGB", "RGBA")  # what open_image returns, and what the pipelines accept
# the file names every folder reader (CLI, evaluation, app examples) takes for images
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})

_SRC_TYPES = "a path, bytes, a binary file object, a numpy array or a PIL image"


# ----------------------------------------------------------------------------------------------- reading
def _read_source(src: Any, max_bytes: int) -> tuple[io.BytesIO, str]:
    """The raw bytes of `src` (path, bytes or file object) in memory, checked for size; and a name for messages."""
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise ImageInputError(f"{path}: no such file (check the path)" if not path.exists()
                                  else f"{path} is not a file")
        size = path.stat().st_size
        name = str(path)
        _check_byte_size(size, max_bytes, name)
        data = path.read_bytes()
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data, name = bytes(src), "image bytes"
        _check_byte_size(len(data), max_bytes, name)
    elif hasattr(src, "read"):
        name = str(getattr(src, "name", "image file object"))
        data = src.read(max_bytes + 1)  # one byte more than allowed tells us it is too large without reading it all
        if not isinstance(data, bytes):
            raise ImageInputError(f"{name} is opened in text mode; open it with 'rb'")
        if len(data) > max_bytes:
            raise ImageInputError(f"{name} is larger than {max_bytes:,} bytes (max_bytes); downscale or recompress "
                                  f"it, or pass a larger max_bytes")
        _check_byte_size(len(data), max_bytes, name)
    else:
        raise ImageInputError(f"cannot read an image from {type(src).__name__}; pass {_SRC_TYPES}")
    return io.BytesIO(data), name


def _check_byte_size(size: int, max_bytes: int, name: str) -> None:
    if size == 0:
        raise ImageInputError(f"{name} is empty (0 bytes); the file was not written completely or is not an image")
    if size > max_bytes:
        raise ImageInputError(f"{name} is {size:,} bytes, over the {max_bytes:,} byte limit (max_bytes); downscale "
                              f"or recompress it, or pass a larger max_bytes")


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageInputError(f"{name} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageInputError(f"{name} is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,} pixel limit "
                              f"(max_pixels); downscale it first, or pass a larger max_pixels if you trust the file")


def _open_encoded(buffer: io.BytesIO, name: str, max_pixels: int) -> Image.Image:
    """Image.open (header only), the pixel-count check, then the full decode of the first frame."""
    try:
        with warnings.catch_warnings():
            # PIL warns (and above 2x its limit, raises) on huge images; either way the file is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(buffer)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError(f"{name} is refused as a possible decompression bomb ({e}); downscale it first, or "
                              f"raise PIL.Image.MAX_IMAGE_PIXELS and max_pixels if you trust the file") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{name} is not an image PIL can read (a wrong extension, or an unsupported "
                              f"format); save it as PNG or JPEG") from None
    except OSError as e:  # e.g. a header that announces an invalid size
        raise ImageInputError(f"{name} could not be opened as an image ({e})") from None
    _check_pixels(im.size, max_pixels, name)  # im.size comes from the header: nothing decoded yet
    try:
        im.seek(0)  # animated GIF / APNG / multi-page TIFF: the first frame
        im.load()  # force the full decode here, so a truncated file fails now and not later in a pipeline
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageInputError(f"{name} is truncated or corrupt ({e}); re-download or re-export it") from None
    return im


def _from_array(a: np.ndarray, name: str = "array") -> Image.Image:
    """uint8 / uint16 / float in [0, 1] / bool arrays, (H, W) or (H, W, 1|2|3|4), -> a PIL image in MODES."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)) or 0 in a.shape:
        raise ImageInputError(f"{name} has shape {a.shape}; pass (H, W) or (H, W, C) with C = 1, 2, 3 or 4")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = np.round(a.astype(np.float64) / 257.0).astype(np.uint8)  # 65535 -> 255: the full range, no clipping
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageInputError(f"{name} contains NaN or infinite values")
        if a.min() < 0 or a.max() > 1:
            raise ImageInputError(f"{name} is a float array with values in [{a.min():g}, {a.max():g}]; float "
                                  f"images must be in [0, 1] (divide by 255 for 0-255 data)")
        a = np.round(a * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageInputError(f"{name} has dtype {a.dtype}; pass uint8, uint16, bool or float in [0, 1] "
                              f"(e.g. a.astype(np.uint8) for 0-255 data)")
    return Image.fromarray(np.ascontiguousarray(a))  # uint8 (H, W) -> L, (H, W, 2|3|4) -> LA, RGB, RGBA


def _normalise_mode(im: Image.Image, name: str) -> Image.Image:
    """Any PIL mode -> L, LA, RGB or RGBA, keeping transparency and the full tonal range."""
    mode = im.mode
    if mode in MODES:
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        # A palette may mark one index (or per-index alphas) as transparent: keep it as an alpha channel.
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode == "PA":
        return im.convert("RGBA")
    if mode in ("La", "RGBa"):  # premultiplied alpha
        return im.convert(mode.upper())
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im)
        if mode == "F":
            scale, what = 1.0, "[0, 1]"
        else:  # 16-bit data (PNG, TIFF) comes as I;16 or, from some decoders, as 32-bit I with 16-bit values
            scale, what = 65535.0, "[0, 65535]"
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > scale:
            raise ImageInputError(f"{name} is a mode {mode} image with values in [{a.min()}, {a.max()}], outside "
                                  f"{what}; convert it to an 8- or 16-bit image first")
        return Image.fromarray(np.round(a.astype(np.float64) * (255.0 / scale)).astype(np.uint8))
    try:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageInputError(f"{name} has mode {mode}, which cannot be converted to RGB ({e}); save it as an "
                              f"8-bit RGB PNG first") from None


def open_image(src: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Open `src` safely and return an upright PIL image in mode L, LA, RGB or RGBA.

    Args:
        src: a path (str or os.PathLike), bytes, a binary file object, a numpy array (uint8, uint16, bool, or float
            in [0, 1]; (H, W) or (H, W, C)) or a PIL image.
        max_pixels: refuse images with more pixels than this, checked from the header before decoding.
            Default DEFAULT_MAX_PIXELS (40 million).
        max_bytes: refuse files (or byte strings) larger than this. Default DEFAULT_MAX_BYTES (50 MB).

    Animated images give their first frame; EXIF orientation is applied; 16-bit and float images are scaled to 8
    bit over their full range; palette images become RGB (RGBA when they have transparency); CMYK, YCbCr and LAB
    become RGB; 1-bit becomes L. Raises ImageInputError for anything refused.
    """
    if isinstance(src, np.ndarray):
        _check_pixels((src.shape[1], src.shape[0]) if src.ndim >= 2 else (0, 0), max_pixels, "array")
        return _from_array(src)
    if isinstance(src, Image.Image):
        name = str(getattr(src, "filename", "") or "image")
        _check_pixels(src.size, max_pixels, name)
        try:
            src.load()  # a lazily opened image may still be truncated
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageInputError(f"{name} is truncated or corrupt ({e}); re-download or re-export it") from None
        im = src
    else:
        buffer, name = _read_source(src, max_bytes)
        im = _open_encoded(buffer, name, max_pixels)
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001  (EXIF parsing can fail in many ways on broken metadata)
        raise ImageInputError(f"{name} has EXIF metadata that cannot be read ({e}); strip the metadata (e.g. re-save "
                              f"the image) and try again") from None
    out = _normalise_mode(upright if upright is not None else im, name)
    if out is src:  # never hand the caller's own object back: the pipelines must not alias user images
        out = out.copy()
    return out


# ----------------------------------------------------------------------------------------------- alpha
def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(color part, alpha): LA -> (L, A), RGBA -> (RGB, A), L and RGB -> (img, None)."""
    if img.mode == "LA":
        return img.getchannel("L"), img.getchannel("A")
    if img.mode == "RGBA":
        return img.convert("RGB"), img.getchannel("A")
    if img.mode in ("L", "RGB"):
        return img, None
    raise ImageInputError(f"split_alpha expects one of {MODES}, got mode {img.mode}; open it with open_image")


def merge_alpha(img: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """Re-attach `alpha` (mode L) to an L or RGB image; alpha is resized with bicubic when the sizes differ
    (e.g. after super-resolution). Returns `img` unchanged when alpha is None."""
    if alpha is None:
        return img
    if img.mode not in ("L", "RGB"):
        raise ImageInputError(f"merge_alpha expects an L or RGB image, got mode {img.mode}")
    if alpha.size != img.size:
        alpha = alpha.resize(img.size, Image.BICUBIC)
    out = img.copy()
    out.putalpha(alpha.convert("L"))
    return out


# ----------------------------------------------------------------------------------------------- tensors
def to_tensor(img: Image.Image) -> torch.Tensor:
    """An L, LA, RGB or RGBA image -> float32 tensor (1, C, H, W) in [0, 1]."""
    if img.mode not in MODES:
        raise ImageInputError(f"to_tensor expects one of {MODES}, got mode {img.mode}; open it with open_image")
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_image(t: torch.Tensor, *, overwrite: bool = False) -> Image.Image:
    """A tensor (1, C, H, W) or (C, H, W) with C = 1, 2, 3, 4 in [0, 1] -> PIL L, LA, RGB or RGBA.

    Values are clamped to [0, 1] (network outputs overshoot slightly) and rounded to the nearest 8-bit level.
    overwrite: `t` may be used as scratch space (its values are then lost), which saves a float copy of the
    image; the pipelines pass True for their own outputs. Default False.
    """
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_image takes one image, got a batch of {t.shape[0]}; index it first")
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 2, 3, 4):
        raise ValueError(f"to_image expects (C, H, W) with C in 1..4, got shape {tuple(t.shape)}")
    t = t.detach().float().cpu()
    # the sum is finite unless some value is NaN/Inf (or the finite values overflow it: then check each value)
    if not torch.isfinite(t.sum()) and not torch.isfinite(t).all():
        raise CnnImgError("the model produced NaN or infinite values; its weights may be corrupt or it may not "
                          "support this precision (try precision='fp32')")
    # one float temporary, rounded in place, then written straight into the (H, W, C) bytes PIL wants: 3x faster
    # than a chain of out-of-place ops and a transposing copy for a 2048x2048 SR output
    levels = (t.clamp_(0, 1) if overwrite else t.clamp(0, 1)).mul_(255.0).round_()
    a = torch.empty(t.shape[1], t.shape[2], t.shape[0], dtype=torch.uint8)
    a.permute(2, 0, 1).copy_(levels)
    return Image.fromarray(a.numpy()[:, :, 0] if a.shape[2] == 1 else a.numpy())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(img: Image.Image, level: int = 1) -> bytes:
    """`img` as PNG bytes, lossless, fast: the rows are Sub-filtered with numpy and deflated in parallel pieces.

    PNG's pixels are one zlib stream, but a stream may be cut into pieces that are deflated independently (each
    but the last ended with a full flush, as pigz does), so every core compresses a band of rows; zlib releases
    the GIL while it works. A 2048x2048 RGB result took 0.05 s on 2 cores with zlib's default strategy, against
    0.18 s for PIL at level 1 (0.8 s at its default level 6), for a file about 15% larger than PIL's at level 1.
    The pieces are deflated with Z_RLE (matches of the previous byte only), which the zlib manual describes as
    almost as fast as Huffman-only coding and close to the default for PNG image data: after the Sub filter,
    a photo's repeats are runs, not long-distance matches. Where the `isal` package (Intel ISA-L) is installed, as
    requirements.txt asks, its deflate does the pieces instead: a 2048x2048 photo result took 58 ms to encode at
    its level 1 against 110 ms with zlib's Z_RLE, for 3% fewer bytes (half of what is left is PIL handing over its
    pixels, np.asarray). L, LA, RGB and RGBA at 8 bits; other modes go through PIL.

    Args:
        img: the image.
        level: compression level, 1 (fastest) to 9 for zlib; ISA-L has levels 0 to 3 and gets min(level, 3).
            Default 1.
    """
    if img.mode not in MODES:
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=level)
        return buf.getvalue()
    a = np.asarray(img)
    h, w = a.shape[:2]
    c = 1 if a.ndim == 2 else a.shape[2]
    flat = a.reshape(h, w * c)
    rows = np.empty((h, 1 + w * c), np.uint8)  # each row: filter type 1 (Sub), then byte - byte one pixel left
    rows[:, 0] = 1
    rows[:, 1:1 + c] = flat[:, :c]
    np.subtract(flat[:, c:], flat[:, :-c], out=rows[:, 1 + c:])
    raw = rows.reshape(-1)
    parts = max(1, min(os.cpu_count() or 1, 8, raw.size // (1 << 20)))  # a piece per core, at least 1 MB each
    bounds = [h * i // parts for i in range(parts + 1)]

    def deflate(i: int) -> bytes:
        # raw deflate (the zlib header and checksum are ours); zlib: default memory level, run-length matches only
        if isal_zlib is not None:
            z = isal_zlib.compressobj(min(level, 3), isal_zlib.DEFLATED, -15)
        else:
            z = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_RLE)
        band = raw[bounds[i] * rows.shape[1]:bounds[i + 1] * rows.shape[1]]
        return z.compress(band) + z.flush(zlib.Z_FINISH if i == parts - 1 else zlib.Z_FULL_FLUSH)

    if parts == 1:
        pieces = [deflate(0)]
    else:
        with ThreadPoolExecutor(parts) as pool:
            pieces = list(pool.map(deflate, range(parts)))
    stream = b"\x78\x01" + b"".join(pieces) + struct.pack(">I", (isal_zlib or zlib).adler32(raw))
    header = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b"")


def save_png(img: Image.Image, path: str | os.PathLike) -> Path:
    """Save `img` as PNG at `path` (parent folders created; `encode_png`), atomically. Returns the path."""
    return atomic_write(path, encode_png(img))
