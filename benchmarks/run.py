"""Benchmarks of the shipped models: speed and memory next to the classical methods, a roofline check, tiled
scaling, every quality table of training, and the app's cold start and API overhead.

    python -m benchmarks.run [--quick] [--weights weights] [--data ../shared/datasets]
                             [--json benchmarks/results.json] [--only speed,roofline,scaling,quality,app]

Prints Markdown tables (each caption names the command that made it) and writes them, the raw numbers and the
machine (CPU model, cores, torch version and threads, device, load average) as JSON. Timings are medians over
repeats after one warm-up call, on the same inputs for every method of a run. Peak memory is the peak resident
set size (RSS) of this process during the measured calls minus the RSS just before them: the kernel's high-water
mark (VmHWM) is reset through /proc/self/clear_refs before and read after, exact and in-process; glibc's mmap
threshold is pinned at 128 KiB so freed tensors return to the OS and do not hide later peaks. On CUDA the
model rows report torch.cuda.max_memory_allocated instead. Missing model folders and data sets are skipped with
a printed note.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import torch
from PIL import Image
from torch import nn

import cnnimg_hub
from cnnimg_hub import baselines, evaluate, pipelines
from cnnimg_hub.degrade import add_noise, random_mask

# ----------------------------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("speed", "roofline", "scaling", "quality", "app")
MODELS = ("classify-cifar10", "classify-fashion-mnist", "generate-fashion-mnist-gan", "generate-fashion-mnist-vae",
          "sr-x2", "sr-x4", "sr-x4-large", "inpaint", "denoise")  # the weights/ folder names
BUDGET_S = {False: 3.0, True: 1.0}  # measured seconds per config (full, quick): repeats = budget / one call
MAX_REPEATS = {False: 7, True: 3}  # ... clipped to 1..this
CLASSIFY_BATCH, GENERATE_N = 256, 64
SR_SIZES = {False: [256, 512], True: [256]}  # square inputs; the light x4 model also runs 512 in --quick (target)
RESTORE_SIZES = [512, 1024]  # denoise and inpaint; BM3D: once per size, and not at 1024 in --quick
SIGMA = 25  # the noise level of the speed inputs
SCALING_SIZES = {False: [(256, 256), (512, 512), (1024, 768), (2048, 1536), (4000, 3000)],
                 True: [(256, 256), (512, 384), (1024, 768)]}
UNTILED_MAX_PIXELS = 1024 * 768  # scaling: the tile=None comparison stops here (its memory is what tiling saves)
SCALING_BYTES_PER_OUTPUT_PX = 48  # skip a scaling size when this estimate exceeds half the available memory
ROOFLINE_SIZE = {"super-resolution": 128, "denoising": 256, "inpainting": 256}  # square inputs
MATMUL_N = 2048
COMPILE_BUDGET_S = 180  # wall-clock box for torch.compile of all models (one subprocess); skipped in --quick
QUALITY_LIMIT = {False: None, True: 4}  # images per validation set (None = all)
CLASSIFY_LIMIT, GENERATE_SAMPLES = {False: None, True: 2000}, {False: 10000, True: 1000}
APP_REPEATS = {False: 7, True: 3}
APP_START_TIMEOUT_S = 180
TARGETS = {  # name -> text; PASS/MISS is printed next to the measurement, never asserted
    "sr_x4_512": "light SR x4 from 512x512 under 0.5 s",
    "denoise_vs_bm3d": "denoiser beats BM3D PSNR at sigma 25 on CBSD68 while >= 10x faster",
    "conv_matmul_fraction": "conv models >= 40% of the matmul rate",
    "app_overhead": "app overhead < 20% for 512x512 SR",
}


# ----------------------------------------------------------------------------------------------- measuring
def _pin_malloc() -> None:
    """glibc keeps freed memory below its (growing) mmap threshold; pinning the threshold returns tensors to the
    OS on free, so one config's leftovers cannot hide the next config's peak."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _status_kib(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+)", Path("/proc/self/status").read_text(), re.M).group(1))


class PeakMemory:
    """Peak memory of the block in MiB: RSS high-water mark minus RSS before (CPU), or CUDA max allocated."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.mib = float("nan")

    def __enter__(self):
        gc.collect()
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
        self._images: dict[tuple[int, int], Image.Image] = {}

    def px(self, n: int, multiple: int = 1) -> int:
        """An image side (or batch size) times --sizes-scale, at least 8 and rounded to `multiple`."""
        return max(8, round(n * self.args.sizes_scale / multiple) * multiple)

    def note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.results["notes"].append(text)

    def model(self, name: str) -> nn.Module | None:
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
                return "nan" if math.isnan(v) else (f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}")
            return str(v)

        lines = [f"**{caption}** (`{self.command}`)", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)] + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
        text = "\n".join(lines)
        print("\n" + text + "\n", flush=True)
        self.results["tables"].append({"section": section, "caption": caption, "markdown": text})

    def target(self, key: str, value: Any, ok: bool | None, detail: str = "") -> None:
        self.results["targets"][key] = {"target": TARGETS[key], "value": value, "status": _status(ok),
                                        "detail": detail}
        print(f"target: {TARGETS[key]}: {_status(ok)} ({detail or value})", flush=True)


# ----------------------------------------------------------------------------------------------- 1. speed
def _row(task, method, size, m, work, unit, cnn_s=None) -> dict[str, Any]:
    return {"task": task, "method": method, "input": size, **m, "throughput": work / m["seconds"], "unit": unit,
            "cnn_over_classical": (cnn_s / m["seconds"]) if cnn_s is not None else None}


def bench_speed(ctx: Context) -> None:
    """Per task at fixed sizes, CNN through the pipelines (PIL in, PIL out) and the classical methods alike."""
    rows, dev, cuda = [], ctx.device, ctx.device.type == "cuda"
    gen = torch.Generator().manual_seed(0)
    for name, model in ctx.models("classify").items():
        n, c, s = ctx.px(CLASSIFY_BATCH), model.in_channels, model.image_size
        x = torch.randint(0, 256, (n, c, s, s), generator=gen, dtype=torch.uint8).float().div(255).to(dev)
        with torch.inference_mode():
            m = measure(lambda: model(x), ctx, device=dev)
        rows.append(_row("classify", name, f"{n} x {s}x{s}", m, n, "images/s"))
    for name, model in ctx.models("generate").items():
        n = min(ctx.px(GENERATE_N), pipelines.MAX_GENERATE)
        m = measure(lambda: pipelines.generate(model, 0, n, seed=0, device=dev), ctx, device=dev)
        rows.append(_row("generate", name, f"{n} images", m, n, "images/s"))
    classical_sr = {"PIL bicubic": baselines.bicubic, "PIL Lanczos": baselines.lanczos}
    for name, model in ctx.models("sr").items():
        s = int(model.scale)
        sizes = SR_SIZES[ctx.quick] + ([512] if ctx.quick and name == "sr-x4" else [])
        for side in map(ctx.px, sizes):
            img = ctx.image(side, side)
            mpx = (side * s) ** 2 / 1e6
            m = measure(lambda: pipelines.upscale(model, img, device=dev), ctx, device=dev)
            rows.append(_row(f"SR x{s}", name, f"{side}x{side}", m, mpx, "out Mpx/s"))
            for method, fn in classical_sr.items():
                rows.append(_row(f"SR x{s}", method, f"{side}x{side}", measure(lambda: fn(img, s), ctx), mpx,
                                 "out Mpx/s", m["seconds"]))
            if name == "sr-x4" and side == ctx.px(512):
                ok = None if cuda or ctx.args.sizes_scale != 1 else m["seconds"] < 0.5
                ctx.target("sr_x4_512", m["seconds"], ok, f"{m['seconds']:.3f} s")
    holes_rng = random.Random(0)
    for side in map(ctx.px, RESTORE_SIZES):
        img, mpx = ctx.image(side, side), side * side / 1e6
        if (model := ctx.model("denoise")) is not None:
            noisy = add_noise(img, SIGMA, 0)
            m = measure(lambda: pipelines.denoise(model, noisy, SIGMA, device=dev), ctx, device=dev)
            rows.append(_row("denoise", "denoise", f"{side}x{side}", m, mpx, "Mpx/s"))
            rows.append(_row("denoise", "OpenCV NLM", f"{side}x{side}",
                             measure(lambda: baselines.nlm_denoise(noisy, SIGMA), ctx), mpx, "Mpx/s", m["seconds"]))
            if ctx.quick and side > ctx.px(512):
                ctx.note(f"BM3D at {side}x{side} is skipped in --quick (about a minute per call on 2 cores)")
            else:  # warm-up on a small crop (imports, allocations), then one measured call: BM3D takes ~1 min/Mpx
                baselines.bm3d_denoise(noisy.crop((0, 0, 32, 32)), SIGMA)
                rows.append(_row("denoise", "BM3D", f"{side}x{side}",
                                 measure(lambda: baselines.bm3d_denoise(noisy, SIGMA), ctx, warmup=False, repeats=1),
                                 mpx, "Mpx/s", m["seconds"]))
        if (model := ctx.model("inpaint")) is not None:
            holes = random_mask(side, side, holes_rng)
            mask = Image.fromarray((holes * 255).astype(np.uint8))
            holed = Image.fromarray((np.asarray(img) * (1 - holes[..., None])).astype(np.uint8))
            m = measure(lambda: pipelines.inpaint(model, holed, mask, device=dev), ctx, device=dev)
            rows.append(_row("inpaint", "inpaint", f"{side}x{side}", m, mpx, "Mpx/s"))
            for method, fn in {"OpenCV Telea": baselines.telea, "OpenCV NS": baselines.navier_stokes}.items():
                rows.append(_row("inpaint", method, f"{side}x{side}", measure(lambda: fn(holed, mask), ctx), mpx,
                                 "Mpx/s", m["seconds"]))
    ctx.results["sections"]["speed"] = {"rows": rows}
    mem = "CUDA max allocated" if cuda else "peak RSS minus RSS before (VmHWM reset per config)"
    ctx.table("speed", f"Speed and memory, {dev.type}, {torch.get_num_threads()} threads: median of n calls after a "
              f"warm-up (BM3D: one call); memory = {mem}; last column = CNN time / classical time (< 1: CNN faster)",
              ["task", "method", "input", "time (s)", "n", "throughput", "unit", "peak MiB", "CNN/classical"],
              [[r["task"], r["method"], r["input"], r["seconds"], r["repeats"], r["throughput"], r["unit"],
                r["peak_mib"], "" if r["cnn_over_classical"] is None else r["cnn_over_classical"]] for r in rows])


# ----------------------------------------------------------------------------------------------- 2. roofline
class _Call(nn.Module):
    """One tensor-in, tensor-out forward per task (what trace, compile and the FLOP hooks see)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.task = model, model.task

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.task == "image-generation":
            return self.model.decode_latent(x, extra)
        if self.task == "denoising":
            return self.model(x, SIGMA)
        if self.task == "inpainting":
            return self.model(x, extra)
        return self.model(x)


def roofline_case(model: nn.Module, ctx_px: Callable[[int], int], side: int | None = None):
    """(inputs, output units, unit name) of the roofline measurement; `side` overrides the input size."""
    g = torch.Generator().manual_seed(0)
    task = model.task
    if task == "image-classification":
        n = ctx_px(CLASSIFY_BATCH) if side is None else 2
        s = model.image_size
        return (torch.rand(n, model.in_channels, s, s, generator=g),), n, "image"
    if task == "image-generation":
        n = ctx_px(GENERATE_N) if side is None else 2
        return (torch.randn(n, model.latent_dim, generator=g), torch.arange(n) % model.num_classes), n, "image"
    side = side or ctx_px(ROOFLINE_SIZE[task])
    side += side % 8 and 8 - side % 8  # the inpainting U-Net needs multiples of 8
    x = torch.rand(1, model.in_channels, side, side, generator=g)
    if task == "inpainting":
        return (x, torch.from_numpy(random_mask(side, side, random.Random(0)))[None, None]), side * side, "output px"
    scale = int(getattr(model, "scale", 1))
    return (x,), (side * scale) ** 2, "output px"


def count_flops(call: nn.Module, inputs) -> int:
    """2 x the multiply-accumulates of every Conv2d, ConvTranspose2d and Linear (other layers are not counted)."""
    macs = 0

    def conv(m, i, o):
        nonlocal macs
        macs += o.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def conv_t(m, i, o):
        nonlocal macs
        macs += i[0].numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)

    def linear(m, i, o):
        nonlocal macs
        macs += o.numel() * m.in_features

    kinds = {nn.Conv2d: conv, nn.ConvTranspose2d: conv_t, nn.Linear: linear}
    hooks = [mod.register_forward_hook(kinds[type(mod)]) for mod in call.modules() if type(mod) in kinds]
    with torch.inference_mode():
        call(*inputs)
    for h in hooks:
        h.remove()
    return 2 * macs


def matmul_gflops(n: int, ctx: Context, device: torch.device) -> float:
    a, b = (torch.randn(n, n, generator=torch.Generator().manual_seed(i)).to(device) for i in (1, 2))
    m = measure(lambda: a @ b, ctx, device=device)
    return 2 * n ** 3 / m["seconds"] / 1e9


def _compile_worker(spec: dict) -> None:
    """In a subprocess: torch.compile each model, print one JSON line per model (compile time, then timing)."""
    torch.set_num_threads(spec["threads"])
    ctx = argparse.Namespace(quick=spec["quick"])
    for name in spec["models"]:
        try:
            model = cnnimg_hub.load_model(Path(spec["weights"]) / name)
            inputs, _, _ = roofline_case(model, lambda n: max(8, round(n * spec["sizes_scale"])))
            compiled = torch.compile(_Call(model).eval())
            with torch.inference_mode():
                t0 = time.perf_counter()
                compiled(*inputs)
                compile_s = time.perf_counter() - t0
                m = measure(lambda: compiled(*inputs), ctx)
            print("RESULT " + json.dumps({"model": name, "compile_s": compile_s, **m}), flush=True)
        except Exception as e:  # report the failure and go on with the next model
            print("RESULT " + json.dumps({"model": name, "error": f"{type(e).__name__}: {str(e)[:300]}"}),
                  flush=True)


def run_compile(ctx: Context, names: list[str]) -> dict[str, dict]:
    """torch.compile variants in one subprocess, time-boxed to COMPILE_BUDGET_S; models not reached are noted."""
    spec = {"models": names, "weights": str(ctx.weights), "threads": torch.get_num_threads(), "quick": ctx.quick,
            "sizes_scale": ctx.args.sizes_scale}
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.run", "--compile-worker", json.dumps(spec)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=ctx.args.compile_budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its inductor helpers, all started here
        proc.wait()
    reader.join(5)
    out = {}
    for line in lines:
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            out[r.pop("model")] = r
    for name in names:
        if name not in out:
            tail = " ".join(l.strip() for l in lines[-3:] if not l.startswith("RESULT "))[:300]
            out[name] = {"error": f"not reached within the {ctx.args.compile_budget:.0f} s time box"
                                  + (f" (last output: {tail})" if tail and proc.returncode not in (0, -9) else "")}
    return out


def bench_roofline(ctx: Context) -> None:
    """FLOPs per output unit, achieved GFLOP/s against this machine's matmul rate, and variants that may move it."""
    dev, threads = ctx.device, torch.get_num_threads()
    cores = os.cpu_count() or 1
    n = max(128, ctx.px(MATMUL_N, 64))
    rates = {threads: matmul_gflops(n, ctx, dev)}
    for t in sorted({1, cores} - {threads}):
        torch.set_num_threads(t)
        rates[t] = matmul_gflops(n, ctx, dev)
    torch.set_num_threads(threads)
    models = {n_: m for n_ in MODELS if (m := ctx.model(n_)) is not None}
    rows, variants = [], []
    for name, model in models.items():
        call = _Call(model).eval()
        small, small_units, unit = roofline_case(model, ctx.px, side=32)
        per_unit = count_flops(call, small) / small_units
        inputs, units, _ = roofline_case(model, ctx.px)
        inputs = tuple(t.to(dev) for t in inputs)
        flops = per_unit * units

        def run(label, fn, t=threads, extra=None):
            try:
                with torch.inference_mode():
                    m = measure(fn, ctx, device=dev)
                gf = flops / m["seconds"] / 1e9
                variants.append({"model": name, "variant": label, **m, "threads": t, "gflops": gf,
                                 "matmul_fraction": gf / rates[t] if t in rates else None, **(extra or {})})
            except Exception as e:  # a variant that does not work is a result too
                variants.append({"model": name, "variant": label, "error": f"{type(e).__name__}: {str(e)[:200]}"})

        run("eager fp32", lambda: call(*inputs))
        base = variants[-1]
        rows.append({"model": name, "task": model.task, "flops_per_unit": per_unit, "unit": unit, "units": units,
                     "seconds": base.get("seconds"), "gflops": base.get("gflops"),
                     "matmul_fraction": base.get("matmul_fraction")})
        cl = copy.deepcopy(call).to(memory_format=torch.channels_last)
        cl_inputs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
        run("channels_last", lambda: cl(*cl_inputs))
        try:
            t0 = time.perf_counter()
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings: Python branches on fixed inputs are fine
                traced = torch.jit.freeze(torch.jit.trace(copy.deepcopy(call), inputs, check_trace=False))
            run("jit.trace + freeze", lambda: traced(*inputs), extra={"prepare_s": time.perf_counter() - t0})
        except Exception as e:
            variants.append({"model": name, "variant": "jit.trace + freeze",
                             "error": f"{type(e).__name__}: {str(e)[:200]}"})
        for t in sorted({1, cores} - {threads}):
            torch.set_num_threads(t)
            run(f"eager fp32, {t} thread{'s' * (t > 1)}", lambda: call(*inputs), t=t)
            torch.set_num_threads(threads)
        if dev.type == "cuda":
            for label, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                half = copy.deepcopy(call).to(dtype)
                h_inputs = tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs)
                run(label, lambda: half(*h_inputs))
    if models and (ctx.quick and not ctx.args.compile):
        ctx.note("torch.compile is skipped in --quick (compiling takes minutes on 2 cores); pass --compile")
    elif models:
        order = sorted(models, key=lambda n_: models[n_].task not in ("super-resolution", "denoising", "inpainting"))
        for name, r in run_compile(ctx, order).items():
            base = next(v for v in variants if v["model"] == name and v["variant"] == "eager fp32")
            gf = (base["gflops"] * base["seconds"] / r["seconds"]) if "seconds" in r and "gflops" in base else None
            variants.append({"model": name, "variant": "torch.compile", **r, "threads": threads, "gflops": gf,
                             "matmul_fraction": gf / rates[threads] if gf else None})
    ctx.results["sections"]["roofline"] = {"matmul": {"n": n, "gflops_by_threads": rates}, "rows": rows,
                                           "variants": variants}
    ctx.table("roofline", f"Roofline: conv/linear FLOPs counted with forward hooks on a 32 px input (per output "
              f"pixel; per image for classifiers and generators), eager fp32 on {dev.type} with {threads} threads, "
              f"against a {n}x{n} float32 matmul at {rates[threads]:.1f} GFLOP/s",
              ["model", "task", "MFLOP per unit", "unit", "GFLOP per call", "time (s)", "GFLOP/s", "of matmul"],
              [[r["model"], r["task"], r["flops_per_unit"] / 1e6, r["unit"], r["flops_per_unit"] * r["units"] / 1e9,
                r["seconds"], r["gflops"], f"{r['matmul_fraction']:.0%}"] for r in rows])
    winners = {}
    for v in variants:
        if "seconds" in v and (v["model"] not in winners or v["seconds"] < winners[v["model"]]["seconds"]):
            winners[v["model"]] = v
    for v in variants:
        v["wins"] = winners.get(v["model"]) is v
    ctx.table("roofline", "Roofline variants: time of the same call per variant (compile time and trace time "
              "separate); the fastest variant of each model is marked", ["model", "variant", "threads", "time (s)",
                                                                        "GFLOP/s", "of matmul", "setup (s)", "wins"],
              [[v["model"], v["variant"], v.get("threads", ""), v.get("seconds", "failed"),
                v.get("gflops") or "", f"{v['matmul_fraction']:.0%}" if v.get("matmul_fraction") else "",
                v.get("compile_s") or v.get("prepare_s") or "", "**fastest**" if v["wins"] else v.get("error", "")]
               for v in variants])
    convs = [r for r in rows if r["task"] in ("super-resolution", "denoising", "inpainting")]
    if convs and not any(r["matmul_fraction"] is None for r in convs):
        worst = min(convs, key=lambda r: r["matmul_fraction"])
        ctx.target("conv_matmul_fraction", worst["matmul_fraction"], worst["matmul_fraction"] >= 0.4,
                   f"lowest: {worst['model']} at {worst['matmul_fraction']:.0%} of matmul")


# ----------------------------------------------------------------------------------------------- 3. scaling
def bench_scaling(ctx: Context) -> None:
    """x4 SR through pipelines.upscale(tile="auto") from small to large inputs: time per Mpx and peak memory."""
    name = "sr-x4" if ctx.model("sr-x4") is not None else next(iter(ctx.models("sr-x4")), None)
    if name is None:
        ctx.note("scaling needs an x4 SR model (weights/sr-x4): skipped")
        return
    model, dev = ctx.model(name), ctx.device
    pipelines.upscale(model, ctx.image(ctx.px(64), ctx.px(64)), device=dev)  # warm-up
    rows = []
    for w, h in SCALING_SIZES[ctx.quick]:
        w, h = ctx.px(w), ctx.px(h)
        out_px = w * h * 16
        need = out_px * SCALING_BYTES_PER_OUTPUT_PX
        if need > psutil.virtual_memory().available / 2:
            ctx.note(f"scaling {w}x{h} skipped: it needs about {need / 2 ** 30:.1f} GiB, over half the free memory")
            continue
        img = ctx.image(w, h)
        holder = {}

        def call():
            holder["info"] = pipelines.upscale(model, img, device=dev, tile="auto")[1]
            return holder["info"]

        m = measure(call, ctx, warmup=False, device=dev)
        info = holder["info"]
        row = {"input": f"{w}x{h}", "output_mpx": out_px / 1e6, **m, "tiles": info.tiles,
               "tile_size": info.tile_size, "s_per_out_mpx": m["seconds"] / (out_px / 1e6),
               "mib_per_out_mpx": m["peak_mib"] / (out_px / 1e6)}
        if w * h <= UNTILED_MAX_PIXELS * ctx.args.sizes_scale ** 2:
            u = measure(lambda: pipelines.upscale(model, img, device=dev, tile=None), ctx, warmup=False, repeats=1,
                        device=dev)
            row.update(untiled_seconds=u["seconds"], untiled_peak_mib=u["peak_mib"])
        rows.append(row)
    ctx.results["sections"]["scaling"] = {"model": name, "rows": rows}
    ctx.table("scaling", f"Scaling: {name} x4 with tile='auto' (first call measured, more when fast); peak = "
              f"{'CUDA max allocated' if dev.type == 'cuda' else 'RSS high-water mark minus RSS before'}. Tiling "
              f"bounds the activations to one tile; what still grows is the output (float32 accumulation and weight "
              f"buffers, the uint8 image: about 20-30 bytes per output pixel). tile=None for comparison up to 1024x768",
              ["input", "output Mpx", "tiles", "time (s)", "s per out Mpx", "peak MiB", "MiB per out Mpx",
               "tile=None time (s)", "tile=None peak MiB"],
              [[r["input"], r["output_mpx"], r["tiles"], r["seconds"], r["s_per_out_mpx"], r["peak_mib"],
                r["mib_per_out_mpx"], r.get("untiled_seconds", ""), r.get("untiled_peak_mib", "")] for r in rows])


# ----------------------------------------------------------------------------------------------- 4. quality
def _training_common():
    sys.path.insert(0, str(ROOT / "training"))
    import common  # noqa: PLC0415  (the training scripts' data loaders)

    return common


def bench_quality(ctx: Context) -> None:
    """Every quality table of training, recomputed from the shipped weights with cnnimg_hub.evaluate."""
    limit, data, section = QUALITY_LIMIT[ctx.quick], ctx.data, {}
    some = f"the first {limit} images of each set (--quick)" if limit else "all images"
    if not (data / "val").is_dir():
        ctx.note(f"{data / 'val'} does not exist (pass --data): the SR, denoising and inpainting tables are skipped")
    else:
        rows = []
        for name, model in ctx.models("sr").items():
            s = int(model.scale)
            sets = [n for n in ("Set5", "Set14", "BSD100") if (data / "val" / n).is_dir()]
            for lr_source in ("pil", "matlab"):
                use = [n for n in sets if lr_source == "pil" or (data / "sr-lr-matlab" / n / f"x{s}").is_dir()]
                if not use:
                    ctx.note(f"{name}: no {lr_source} LR data for x{s}: skipped")
                    continue
                for set_name, r in evaluate.eval_sr(model, data, sets=use, lr_source=lr_source,
                                                    max_images=limit).items():
                    rows.append({"model": name, "scale": s, "set": set_name, "lr": lr_source, **r})
        if rows:
            section["sr"] = rows
            ctx.table("quality", f"Super-resolution: PSNR/SSIM on Y, `scale` px border, {some}; LR from PIL bicubic "
                      f"or from MATLAB bicubic (sr-lr-matlab)", ["model", "scale", "set", "LR", "images", "PSNR",
                                                                  "SSIM", "bicubic PSNR", "bicubic SSIM"],
                      [[r["model"], f"x{r['scale']}", r["set"], r["lr"], r["images"], r["psnr"], r["ssim"],
                        r["bicubic_psnr"], r["bicubic_ssim"]] for r in rows])
        if (model := ctx.model("denoise")) is not None and (data / "val" / "CBSD68").is_dir():
            n_bm3d = ctx.args.bm3d_images if ctx.args.bm3d_images is not None else limit
            both = n_bm3d == limit
            res = evaluate.eval_denoise(model, data, baseline_names=("bm3d", "nlm") if both else ("nlm",),
                                        max_images=limit)
            bm3d = res if both else (evaluate.eval_denoise(model, data, baseline_names=("bm3d",), max_images=n_bm3d)
                                     if n_bm3d != 0 else {})
            rows = [{"sigma": int(k[5:]), **v, **{f"bm3d_{x}": bm3d[k][f"bm3d_{x}"] for x in ("psnr", "ssim", "seconds")
                                                   if k in bm3d}, "bm3d_images": bm3d.get(k, {}).get("images", 0),
                     "psnr_on_bm3d_images": bm3d.get(k, {}).get("psnr"),
                     "seconds_on_bm3d_images": bm3d.get(k, {}).get("seconds")} for k, v in res.items()]
            section["denoise"] = rows
            sub = "" if both else (f"; BM3D on the first {n_bm3d} images only (--bm3d-images), compared with "
                                   f"the CNN on the same images (the 'BM3D images' columns)")
            ctx.table("quality", f"Denoising: CBSD68 RGB PSNR/SSIM, {some}, fixed-seed noise{sub}; seconds per "
                      f"image", ["sigma", "images", "CNN PSNR", "CNN SSIM", "NLM PSNR", "NLM SSIM", "BM3D images",
                                 "CNN PSNR there", "BM3D PSNR", "BM3D SSIM", "CNN s", "NLM s", "BM3D s"],
                      [[r["sigma"], r["images"], r["psnr"], r["ssim"], r["nlm_psnr"], r["nlm_ssim"], r["bm3d_images"],
                        r["psnr_on_bm3d_images"] or "", r.get("bm3d_psnr", ""), r.get("bm3d_ssim", ""), r["seconds"],
                        r["nlm_seconds"], r.get("bm3d_seconds", "")] for r in rows])
            if "sigma25" in bm3d:
                b = bm3d["sigma25"]
                speedup = b["bm3d_seconds"] / b["seconds"]
                ctx.target("denoise_vs_bm3d", {"psnr": b["psnr"], "bm3d_psnr": b["bm3d_psnr"], "speedup": speedup},
                           b["psnr"] > b["bm3d_psnr"] and speedup >= 10,
                           f"{b['psnr']:.2f} vs BM3D {b['bm3d_psnr']:.2f} dB on {b['images']} images, "
                           f"{speedup:.0f}x faster")
        if (model := ctx.model("inpaint")) is not None and (data / "val" / "BSD100").is_dir():
            r = evaluate.eval_inpaint(model, data, max_images=limit)["BSD100"]
            section["inpaint"] = r
            ctx.table("quality", f"Inpainting: BSD100 256x256 center crops, fixed-seed masks (10-40% holes), {some}",
                      ["images", "hole fraction", "CNN PSNR", "CNN SSIM", "Telea PSNR", "Telea SSIM", "NS PSNR",
                       "NS SSIM"], [[r["images"], r["hole_fraction"], r["psnr"], r["ssim"], r["telea_psnr"],
                                     r["telea_ssim"], r["ns_psnr"], r["ns_ssim"]]])
    common, rows = _training_common(), []
    n_cls = CLASSIFY_LIMIT[ctx.quick]
    loaders = {"classify-cifar10": lambda: common.cifar10("test", archive=data / "cifar10-jpg.tar.gz")[:2],
               "classify-fashion-mnist": lambda: common.fashion_mnist("test")}
    test_sets = {}
    for name, load in loaders.items():
        if (model := ctx.model(name)) is None:
            continue
        try:
            images, labels = load()
        except (SystemExit, OSError) as e:
            ctx.note(f"{name}: test split unavailable ({e}): skipped")
            continue
        test_sets[name] = images
        r = evaluate.eval_classifier(model, images[:n_cls], labels[:n_cls])
        r_tta = evaluate.eval_classifier(model, images[:n_cls], labels[:n_cls], flip_tta=True)
        rows.append({"model": name, **r, "top1_flip_tta": r_tta["top1"]})
    if rows:
        section["classify"] = rows
        ctx.table("quality", "Classification: test split" + (f", first {n_cls} images (--quick)" if n_cls else ""),
                  ["model", "images", "top-1", "top-5", "top-1 with flip TTA"],
                  [[r["model"], r["images"], r["top1"], r["top5"], r["top1_flip_tta"]] for r in rows])
    judge, rows = ctx.model("classify-fashion-mnist"), []
    for name, model in ctx.models("generate").items():
        if judge is None or "classify-fashion-mnist" not in test_sets:
            ctx.note(f"{name}: needs the Fashion-MNIST classifier and test split as judge: skipped")
            continue
        r = evaluate.eval_generator(model, judge, test_sets["classify-fashion-mnist"], n=GENERATE_SAMPLES[ctx.quick])
        rows.append({"model": name, **r})
    if rows:
        section["generate"] = rows
        ctx.table("quality", "Generation: class agreement of the Fashion-MNIST classifier (judge) and FID in its "
                  "feature space against the test split", ["model", "samples", "class agreement", "FID (judge)"],
                  [[r["model"], r["samples"], r["class_agreement"], r["fid_judge"]] for r in rows])
    ctx.results["sections"]["quality"] = section


# ----------------------------------------------------------------------------------------------- 5. app
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_app(ctx: Context) -> None:
    """Cold start of `python app.py` and the gradio_client overhead of /upscale over pipelines.upscale."""
    name = next((n for n in ("sr-x4", "sr-x2", "sr-x4-large") if ctx.model(n) is not None), None)
    if name is None:
        ctx.note("the app benchmark needs an SR model in --weights: skipped")
        return
    model, side = ctx.model(name), ctx.px(512)
    tmp = Path(tempfile.mkdtemp(prefix="cnnimg-bench-app-"))
    photo = tmp / "input.png"
    ctx.image(side, side).save(photo)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "CNNIMG_WEIGHTS": str(ctx.weights.resolve()),
           "CNNIMG_DEVICE": ctx.device.type, "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    os.environ.update({k: env[k] for k in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "NO_PROXY",
                                           "no_proxy")})
    port, url = _free_port(), None
    t0 = time.perf_counter()
    log = open(tmp / "app.log", "w")
    # weights and device come from the environment, so the module-level demo is the one served (built once)
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        http_s = None
        while time.perf_counter() - t0 < APP_START_TIMEOUT_S and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    if r.status == 200:
                        http_s = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.1)
        if http_s is None:
            ctx.note(f"the app did not answer within {APP_START_TIMEOUT_S} s: "
                     f"{(tmp / 'app.log').read_text()[-500:]}")
            return
        from gradio_client import Client, handle_file  # noqa: PLC0415  (only this section needs it)

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        scale = int(model.scale)
        predict = lambda: client.predict(handle_file(str(photo)), scale, name, "", False,  # noqa: E731
                                         api_name="/upscale")
        predict()
        first_s = time.perf_counter() - t0
        n = APP_REPEATS[ctx.quick]
        via_api = measure(predict, ctx, warmup=False, repeats=n)
        direct = measure(lambda: pipelines.upscale(model, Image.open(photo), device=ctx.device), ctx, repeats=n,
                         device=ctx.device)
        # The handler alone, in-process: splits the overhead into the handler's extra work and Gradio's transport.
        os.environ.update({k: env[k] for k in ("CNNIMG_WEIGHTS", "CNNIMG_DEVICE", "GRADIO_TEMP_DIR")})
        sys.path.insert(0, str(ROOT))
        import app  # noqa: PLC0415  (builds the module-level demo for the same weights)

        store = app.ModelStore(ctx.weights, ctx.device.type)
        handler = measure(lambda: app.upscale_image(store, str(photo), scale, name, "", False), ctx, repeats=n)
    finally:
        proc.terminate()  # the app process started above, by its id
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    overhead = via_api["seconds"] / direct["seconds"] - 1
    r = {"model": name, "input": f"{side}x{side}", "http_200_s": http_s, "first_predict_s": first_s,
         "api_s": via_api["seconds"], "handler_s": handler["seconds"], "direct_s": direct["seconds"],
         "overhead": overhead, "handler_overhead": handler["seconds"] / direct["seconds"] - 1, "api": via_api,
         "handler": handler, "direct": direct}
    ctx.results["sections"]["app"] = r
    ctx.table("app", f"App: cold start of `python app.py` (spawn to first HTTP 200, and to the first /upscale "
              f"result through gradio_client, model load included), then median of {n} /upscale calls vs "
              f"pipelines.upscale in-process on the same {side}x{side} PNG, and of the app's handler called in-process (its "
              f"extras: PIL bicubic, a nearest-neighbour preview, a PNG file, a results table; the rest of the API "
              f"time is Gradio: upload, PNG encoding of the outputs, download)",
              ["model", "input", "to HTTP 200 (s)", "to first predict (s)", "API call (s)", "handler in-process (s)",
               "direct (s)", "overhead (API)", "of which handler"],
              [[name, r["input"], http_s, first_s, r["api_s"], r["handler_s"], r["direct_s"], f"{overhead:+.0%}",
                f"{r['handler_overhead']:+.0%}"]])
    ctx.target("app_overhead", overhead, overhead < 0.2 if ctx.args.sizes_scale == 1 else None, f"{overhead:+.0%}")


# ----------------------------------------------------------------------------------------------- main
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


BENCHES = {"speed": bench_speed, "roofline": bench_roofline, "scaling": bench_scaling, "quality": bench_quality,
           "app": bench_app}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes, repeats and images (about 2 minutes idle)")
    p.add_argument("--weights", default="weights", help="folder of model folders (missing ones are skipped)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets"), help="datasets root (val/, ...)")
    p.add_argument("--json", default="benchmarks/results.json", help="where to write tables and raw numbers")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--sizes-scale", type=float, default=1.0,
                   help="multiply every image side, batch and matmul size (e.g. 0.1 for smoke tests); targets then "
                        "read n/a")
    p.add_argument("--bm3d-images", type=int, default=None,
                   help="CBSD68 images for the BM3D quality column (default: all; 4 with --quick); 0 = no BM3D")
    p.add_argument("--compile", action="store_true", help="run the torch.compile variants even with --quick")
    p.add_argument("--compile-budget", type=float, default=COMPILE_BUDGET_S, help="seconds for torch.compile")
    p.add_argument("--compile-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    args.only = [s for s in SECTIONS if s in only]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.compile_worker:
        _compile_worker(json.loads(args.compile_worker))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    _pin_malloc()
    ctx = Context(args, argv)
    start = time.perf_counter()
    ctx.results.update(date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                       command=ctx.command, quick=args.quick, machine=machine(ctx.device), seconds={})
    m = ctx.results["machine"]
    busy = m["load_average_start"][0] > m["cores"]
    print(f"# cnnimg-hub benchmarks ({'quick' if args.quick else 'full'})\n\n{ctx.results['date']} · {m['cpu']} · "
          f"{m['cores']} cores · torch {m['torch']} · {m['threads']} threads · {m['device']} · load average "
          f"{m['load_average_start'][0]:.1f}" + (" (busy: other processes share the CPU, times are pessimistic)"
                                                  if busy else ""), flush=True)
    for section in args.only:
        t0 = time.perf_counter()
        print(f"\n## {section}\n", flush=True)
        BENCHES[section](ctx)
        ctx.results["seconds"][section] = time.perf_counter() - t0
    ctx.results["seconds"]["total"] = time.perf_counter() - start
    m["load_average_end"] = list(os.getloadavg())
    if ctx.results["targets"]:
        ctx.table("targets", "Targets", ["target", "status", "measured"],
                  [[t["target"], t["status"], t["detail"]] for t in ctx.results["targets"].values()])
    print("seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in ctx.results["seconds"].items()))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ctx.results, indent=2, default=float) + "\n")
        print(f"wrote {path}")
    return ctx.results


if __name__ == "__main__":
    main()
