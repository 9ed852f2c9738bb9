"""What every benchmark section shares: the settings read by more than one section, `measure` (median seconds
over repeats after a warm-up, and peak memory through `PeakMemory`), the run's `Context` (options, loaded models,
the shared test photo, Markdown tables and targets) and `machine` (what ran it).

See run.py's docstring for how time and memory are measured.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import os
import platform
import re
import shlex
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import torch
from PIL import Image
from torch import nn

import cnnimg_hub
from cnnimg_hub import pipelines

from .merge import render_table

# ----------------------------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
MODELS = ("classify-cifar10", "classify-fashion-mnist", "generate-fashion-mnist-gan", "generate-fashion-mnist-vae",
          "sr-x2", "sr-x4", "sr-x2-bicubic", "sr-x4-bicubic", "sr-x4-large", "inpaint", "denoise")  # weights/ folders
BUDGET_S = {False: 3.0, True: 1.0}  # measured seconds per config (full, quick): repeats = budget / one call
MAX_REPEATS = {False: 7, True: 3}  # ... clipped to 1..this
CLASSIFY_BATCH, GENERATE_N = 256, 64
SIGMA = 25  # the noise level of the speed inputs (and of the roofline's denoiser calls)
# pipeline seconds at 512x512 in the run of 2026-12-02 (fp32, benchmarks/results.json then): the 2x target's base
TODAY_512 = {"sr-x2": 0.1356, "sr-x4": 0.2576, "sr-x2-bicubic": 0.1406, "sr-x4-bicubic": 0.2607, "denoise": 0.6211,
             "inpaint": 0.6425}
TODAY_LOAD_RPS = 4.59  # load test requests/s of 2026-11-25 (README)
TARGETS = {  # name -> text; PASS/MISS is printed next to the measurement, never asserted
    "sr_x4_512": "light SR x4 from 512x512 under 0.1 s (in the precision it runs in by default)",
    "restore_2x": "every restoration model at 512x512 >= 2x faster than on 2026-12-02 (TODAY_512), in its default "
                  "precision, bf16 only where its quality change was measured within 0.05 dB",
    "upscale_png_0.1s": "512x512 x4 through /upscale_png within 0.1 s of the in-process call",
    "load_test_3x": "load test (16 clients, all endpoints, 48 px): >= 3x the 4.59 requests/s of 2026-11-25, 0 errors",
    "denoise_vs_bm3d": "denoiser beats BM3D PSNR at sigma 25 on CBSD68 while >= 10x faster",
    "conv_matmul_fraction": "conv models >= 40% of the peak (matmul or conv) of the precision they run in",
    "app_overhead": "app overhead < 20% for 512x512 SR",
    "denoise_cbsd68_31": "denoiser CBSD68 sigma 25 >= 31.0 dB over all 68 images",
    "denoise_bm3d_margin": "denoiser >= BM3D + 0.3 dB at sigma 15, 25 and 50 on the BM3D images",
    "denoise_mcmaster": "denoiser >= BM3D on McMaster sigma 25 (BM3D images)",
    "inpaint_bsd100": "inpainter >= OpenCV Telea + 2.0 dB on BSD100 256 px crops",
    "inpaint_second_set": "inpainter >= OpenCV Telea + 1.5 dB on McMaster 256 px crops",
    "sr_any_downsampler": "default SR beats bicubic by >= 1.0 dB (x2) / 0.6 dB (x4) under every downsampler",
    "sr_pil_kept": "default SR PIL-bicubic Set5 within 0.3 dB of 37.22 (x2) / 31.00 (x4)",
    "sr_large_worth_it": "large SR x4 >= light + 0.5 dB on Set5, Set14, BSD100 (Set5 >= 31.6)",
    "cifar10_93": "CIFAR-10 classifier top-1 >= 93% on the test split (flip + shift TTA, as airbench reports)",
    "fashion_mnist_94": "Fashion-MNIST classifier top-1 >= 94% on the test split",
    "gan_quality": "GAN class agreement >= 90%, judge FID below the VAE's, diversity >= 0.8 in every class",
    "vae_quality": "VAE class agreement >= 90%, diversity >= 0.8 in every class",
}


# ----------------------------------------------------------------------------------------------- measuring
def trim_malloc() -> None:
    """Hand glibc's free heap pages back to the OS. glibc keeps freed blocks under its mmap threshold (which grows
    to 32 MiB) for reuse; trimmed before a measurement, the RSS holds only live memory, so an earlier config's
    leftovers cannot hide the next one's peak. Between the timed calls glibc reuses memory as it normally does."""
    global _LIBC
    try:
        _LIBC = _LIBC or ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


_LIBC = None


def _status_kib(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+)", Path("/proc/self/status").read_text(), re.M).group(1))


class PeakMemory:
    """Peak memory of the block in MiB: RSS high-water mark minus RSS before (CPU), or CUDA max allocated."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.mib = float("nan")

    def __enter__(self):
        gc.collect()
        trim_malloc()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
            return self
        self.before, self._samples = psutil.Process().memory_info().rss, None
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:  # not Linux, or not allowed: sample RSS every millisecond instead (may miss short peaks)
            self._samples, self._stop = [self.before], threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(0.001):
            self._samples.append(proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self._samples is None:
            peak = _status_kib("VmHWM") * 1024
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._samples)
        self.mib = max(0.0, (peak - self.before) / 2 ** 20)


def measure(fn: Callable[[], Any], ctx: "Context", *, warmup: bool = True, repeats: int | None = None,
            device: torch.device | None = None) -> dict[str, Any]:
    """Median wall-clock seconds of `fn()` over repeats after one warm-up call, and the peak memory of the repeats.

    Without `repeats`, as many calls as fit in the time budget (judged from the warm-up, or from the first call
    when there is no warm-up), 1 to MAX_REPEATS.
    """
    device = device or torch.device("cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    first = None
    if warmup:
        t0 = time.perf_counter()
        fn()
        sync()
        first = time.perf_counter() - t0
    fit = lambda t: max(1, min(MAX_REPEATS[ctx.quick], int(BUDGET_S[ctx.quick] / t)))  # noqa: E731
    if repeats is None and first is not None:
        repeats = fit(first)
    times, out = [], None
    with PeakMemory(device) as mem:
        while len(times) < (repeats or 1):
            out = None  # drop the previous result before the next call, so the peak holds one output
            t0 = time.perf_counter()
            out = fn()
            sync()
            times.append(time.perf_counter() - t0)
            repeats = repeats or fit(times[0])  # no warm-up: the first measured call sets the count
        del out
    return {"seconds": statistics.median(times), "repeats": len(times), "times": times, "warmup_s": first,
            "peak_mib": mem.mib}


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


# ----------------------------------------------------------------------------------------------- context
class Context:
    """The run's options, loaded models, shared inputs, and everything printed or written."""

    def __init__(self, args: argparse.Namespace, argv: list[str]):
        self.args, self.quick = args, args.quick
        self.weights, self.data = Path(args.weights), Path(args.data)
        self.device = pipelines.select_device(args.device)
        self.command = "python -m benchmarks.run" + ("" if not argv else " " + shlex.join(argv))
        self.results: dict[str, Any] = {"sections": {}, "targets": {}, "tables": [], "notes": []}
        self._models: dict[str, nn.Module | None] = {}
        self.section = ""  # the section running (run.py sets it): targets record it
        self._images: dict[tuple[int, int], Image.Image] = {}

    def px(self, n: int, multiple: int = 1) -> int:
        """An image side (or batch size) times --sizes-scale, at least 8 and rounded to `multiple`."""
        return max(8, round(n * self.args.sizes_scale / multiple) * multiple)

    @contextlib.contextmanager
    def timed(self, name: str):
        """Wall-clock seconds of the block into results["seconds"][name] (the run prints them at the end)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.results.setdefault("seconds", {})[name] = time.perf_counter() - t0

    def note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.results["notes"].append(text)

    def model(self, name: str) -> nn.Module | None:
        if name not in self._models and self.args.models and name not in self.args.models:
            self._models[name] = None  # left out by --models: quietly, the merged file keeps its old rows
        if name not in self._models:
            folder = self.weights / name
            if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
                self.note(f"{folder} is missing (not trained yet?): its rows are skipped")
                self._models[name] = None
            else:
                self._models[name] = cnnimg_hub.load_model(folder, device=self.device)
        return self._models[name]

    def models(self, prefix: str) -> dict[str, nn.Module]:
        return {n: m for n in MODELS if n.startswith(prefix) and (m := self.model(n)) is not None}

    def image(self, w: int, h: int) -> Image.Image:
        """The shared test photo (examples/astronaut) resized to w x h: the same input for every method."""
        if (w, h) not in self._images:
            src = ROOT / "examples" / "astronaut.jpg"
            if src.is_file():
                self._images[(w, h)] = Image.open(src).convert("RGB").resize((w, h), Image.BICUBIC)
            else:  # a smooth gradient with texture, from a fixed seed
                rng = np.random.default_rng(0)
                y, x = np.mgrid[0:h, 0:w]
                a = np.stack([x * 255 / w, y * 255 / h, 128 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)], -1)
                self._images[(w, h)] = Image.fromarray(np.clip(a + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8))
        return self._images[(w, h)]

    def table(self, section: str, caption: str, header: list[str], rows: list[list[Any]]) -> None:
        def cell(v):
            if isinstance(v, float):
                if math.isnan(v):
                    return "nan"
                if abs(v) >= 100:
                    return f"{v:,.0f}"
                # PSNR 37.22 and 31.00 (papers' precision), SSIM 0.9577, 0.04123 s
                return f"{v:.2f}" if abs(v) >= 1 else f"{v:.4g}"
            return str(v)

        cells = [[cell(v) for v in r] for r in rows]
        text = render_table(caption, header, cells, [self.command] * len(cells))
        print("\n" + text + "\n", flush=True)
        self.results["tables"].append({"section": section, "caption": caption, "markdown": text, "header": header,
                                       "rows": cells, "row_commands": [self.command] * len(cells)})

    def target(self, key: str, value: Any, ok: bool | None, detail: str = "") -> None:
        self.results["targets"][key] = {"target": TARGETS[key], "value": value, "status": _status(ok),
                                        "detail": detail, "section": self.section}
        print(f"target: {TARGETS[key]}: {_status(ok)} ({detail or value})", flush=True)


# ----------------------------------------------------------------------------------------------- machine
def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": str(device), "python": platform.python_version(), "platform": platform.platform(),
            "memory_gib": psutil.virtual_memory().total / 2 ** 30, "load_average_start": list(os.getloadavg())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
