"""Where and how a model runs: the device (`select_device`), the compute precision (`compute_dtype`: bf16 on CPUs
with native bf16 for the models measured fit for it), and the `RunInfo` every pipeline call returns."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import CnnImgError, ImageInputError

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
            and clamping) or {"mask": <the dilated hole mask>} for inpainting, so a caller shows and reuses exactly
            that value instead of recomputing it.
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


def device_name(device: torch.device) -> str:
    return f"cuda:{torch.cuda.current_device() if device.index is None else device.index}" \
        if device.type == "cuda" else device.type


def end_rank(code: int = 0) -> None:
    """End this process of a multi-process (torchrun) run now, its output flushed, without the interpreter's
    teardown. Call it after every rank has met at a barrier and the process group is destroyed: nothing is pending.

    A finished rank was aborted at exit ("terminate called without an active exception", SIGABRT), which fails the
    whole torchrun: C++ teardown after the work (the DDP reducer and gloo objects that reference cycles keep alive
    until the interpreter finalizes, then static destructors). Waiting for every rank first made it rare, not
    impossible: it came back once in CI (never in 115 local runs)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30,
                      top_pad: int = 256 << 20, arenas: int = 1) -> bool:
    """Ask glibc's allocator to keep freed memory for the next request instead of returning it to the kernel.

    By default glibc serves blocks over its (adaptive) mmap threshold with fresh mmaps and trims the heap top, so
    every model call on a big image faults in and zeroes hundreds of MB of new pages. Raising the mmap threshold
    to its maximum (32 MB on 64-bit), the trim threshold and the top pad makes a server process reuse them: the
    app's 512x512 x4 SR call went from 0.7-1.1 s to 0.58-0.70 s on this 2-core CPU. glibc also gives each new
    thread that allocates its own arena, whose memory is cold again, and a web server runs requests on whichever
    of its worker threads is free: `arenas` (M_ARENA_MAX) 1 makes them all share the warm one. The same call
    served by the app then took 0.47-0.55 s instead of 0.53-0.93 s (8 calls each; MALLOC_ARENA_MAX=1 A/B), and
    /upscale_png over plain HTTP 0.65 s instead of 0.84 (median). A no-op (False) off glibc. Call it once, early,
    before the threads start, in a process that serves many calls (app.py does)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad),
                (_M_ARENA_MAX, arenas)))


@functools.cache
def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 / AMX on x86, as oneDNN reports it). Without it,
    bf16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compute_dtype(precision: str | None, device: torch.device, measured: str | None = None, *,
                  cuda_auto: torch.dtype = torch.float16) -> torch.dtype:
    """The autocast dtype of `precision` ("auto", "fp32", "fp16", "bf16") on `device`.

    Args:
        precision: "auto" (or None) decides per device; the others force that dtype.
        device: where the model runs.
        measured: the model's measured choice (its spec's `precision`, written by `python -m benchmarks.precision
            --write`): "bf16" when its quality in bf16 stays within the tolerance, "fp32" or None otherwise.
        cuda_auto: what "auto" means on CUDA. Default float16 (2-8x faster; the restoration runner reruns in
            float32 on NaN/Inf); the classifiers and generators pass float32.

    "auto" on a CPU is bfloat16 only when the CPU computes bf16 natively (`cpu_has_bf16`) and the model was
    measured fit for it; float32 otherwise (emulated bf16 is slower, and an unmeasured model keeps its quality).
    """
    text = (precision or "auto").lower()
    if text == "auto":
        if device.type == "cuda":
            return cuda_auto
        if device.type == "cpu" and measured == "bf16" and cpu_has_bf16():
            return torch.bfloat16
        return torch.float32
    if text not in PRECISIONS:
        raise ImageInputError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    return PRECISIONS[text]


def autocast(device: torch.device, dtype: torch.dtype):
    """torch.autocast to `dtype` on `device`, or nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
