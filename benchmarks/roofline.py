"""Section 2, roofline: FLOPs per output unit counted with forward hooks, this machine's peaks (a matmul and a
3x3 convolution in float32 and in bfloat16, measured in the same run), each model's GFLOP/s in the precision it
runs in by default against the peak of that precision, and the variants that may move it (channels_last, bf16
autocast, jit.trace + freeze, ONNX Runtime, thread counts, fp16/bf16 on CUDA, torch.compile in a time-boxed
subprocess)."""
from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import cnnimg_hub

try:  # optional: the ONNX Runtime variant (requirements-dev.txt)
    import onnxruntime as ort
except ImportError:
    ort = None
from cnnimg_hub.degrade import random_mask
from cnnimg_hub.export import to_onnx

from cnnimg_hub.runtime import autocast

from ._measure import CLASSIFY_BATCH, GENERATE_N, MODELS, ROOT, SIGMA, Context, measure
from .speed import default_precision

# ----------------------------------------------------------------------------------------------- settings
ROOFLINE_SIZE = {"super-resolution": 128, "denoising": 256, "inpainting": 256}  # square inputs
MATMUL_N = 2048
CONV_SIDE, CONV_CHANNELS = 128, 128  # the peak convolution: 3x3, CONV_CHANNELS -> CONV_CHANNELS, channels_last
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # fp16 on CUDA only
DEFAULT_VARIANT = {"fp32": "channels_last", "bf16": "bf16 autocast, channels_last", "fp16": "fp16"}
COMPILE_BUDGET_S = 180  # wall-clock box for torch.compile of all models (one subprocess); skipped in --quick


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


def peak_gflops(n: int, side: int, ctx: Context, device: torch.device) -> dict[str, dict[str, float]]:
    """{precision: {"matmul": GFLOP/s of an n x n matmul, "conv": of a 3x3 convolution on a side x side image}},
    in the tensors' own dtype (no autocast): the best this machine does in each precision."""
    out = {}
    for label, dtype in PEAK_DTYPES.items():
        if label == "fp16" and device.type != "cuda":
            continue
        a, b = (torch.randn(n, n, generator=torch.Generator().manual_seed(i)).to(device, dtype) for i in (1, 2))
        conv = nn.Conv2d(CONV_CHANNELS, CONV_CHANNELS, 3, padding=1).to(device, dtype,
                                                                       memory_format=torch.channels_last)
        x = torch.randn(1, CONV_CHANNELS, side, side).to(device, dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            mm, cv = measure(lambda: a @ b, ctx, device=device), measure(lambda: conv(x), ctx, device=device)
        out[label] = {"matmul": 2 * n ** 3 / mm["seconds"] / 1e9,
                      "conv": 2 * CONV_CHANNELS ** 2 * 9 * side * side / cv["seconds"] / 1e9}
    return out


def compile_worker(spec: dict) -> None:
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
    cache = tempfile.mkdtemp(prefix="cnnimg-inductor-")  # cold: the compile time a first run pays
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": cache}
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
    shutil.rmtree(cache, ignore_errors=True)
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


def onnx_session(call: nn.Module, inputs: tuple, threads: int):
    """(ONNX Runtime CPU session of `call` exported at these inputs' shapes, its input feeds)."""
    buf = io.BytesIO()
    to_onnx(call, inputs, buf)  # the export of `python -m cnnimg_hub export-onnx`, at fixed shapes
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
    return session, {i.name: t.cpu().numpy() for i, t in zip(session.get_inputs(), inputs)}


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
    peaks = peak_gflops(n, ctx.px(CONV_SIDE, 8), ctx, dev)
    peak = {label: max(p.values()) for label, p in peaks.items()}
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
                # against the fp32 matmul at that thread count, or the peak of the variant's own precision
                prec = next((k for k in ("bf16", "fp16") if k in label), "fp32")
                versus = peak.get(prec) if t == threads else rates.get(t) if prec == "fp32" else None
                variants.append({"model": name, "variant": label, **m, "threads": t, "gflops": gf,
                                 "matmul_fraction": gf / versus if versus else None, **(extra or {})})
            except Exception as e:  # a variant that does not work is a result too
                variants.append({"model": name, "variant": label, "error": f"{type(e).__name__}: {str(e)[:200]}"})

        run("eager fp32", lambda: call(*inputs))
        cl = copy.deepcopy(call).to(memory_format=torch.channels_last)
        cl_inputs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
        run("channels_last", lambda: cl(*cl_inputs))

        def bf16_call():
            with autocast(dev, torch.bfloat16):
                return cl(*cl_inputs)

        if dev.type == "cpu":  # what the pipelines run for a model measured fit for bf16 (CUDA: the rows below)
            run("bf16 autocast, channels_last", bf16_call)
        default = default_precision(model, dev)
        base = next((v for v in variants if v["model"] == name and v["variant"] == DEFAULT_VARIANT[default]), {})
        try:
            t0 = time.perf_counter()
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings: Python branches on fixed inputs are fine
                traced = torch.jit.freeze(torch.jit.trace(copy.deepcopy(call), inputs, check_trace=False))
            run("jit.trace + freeze", lambda: traced(*inputs), extra={"prepare_s": time.perf_counter() - t0})
        except Exception as e:
            variants.append({"model": name, "variant": "jit.trace + freeze",
                             "error": f"{type(e).__name__}: {str(e)[:200]}"})
        if ort is not None and dev.type == "cpu" and not ctx.quick:
            try:
                t0 = time.perf_counter()
                session, feeds = onnx_session(call, inputs, threads)
                run("ONNX Runtime", lambda: session.run(None, feeds), extra={"prepare_s": time.perf_counter() - t0})
            except Exception as e:
                variants.append({"model": name, "variant": "ONNX Runtime",
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
            base = next((v for v in variants if v["model"] == name and v["variant"] == DEFAULT_VARIANT[default]),
                        base)
        rows.append({"model": name, "task": model.task, "flops_per_unit": per_unit, "unit": unit, "units": units,
                     "precision": default, "variant": base.get("variant"), "seconds": base.get("seconds"),
                     "gflops": base.get("gflops"),
                     "peak_fraction": base["gflops"] / peak[default] if base.get("gflops") and default in peak
                     else None})
    if models and ort is None and dev.type == "cpu":
        ctx.note("ONNX Runtime variant skipped: `pip install onnx onnxruntime` to measure it")
    if models and (ctx.quick and not ctx.args.compile):
        ctx.note("torch.compile is skipped in --quick (compiling takes minutes on 2 cores); pass --compile")
    elif models:
        order = sorted(models, key=lambda n_: models[n_].task not in ("super-resolution", "denoising", "inpainting"))
        for name, r in run_compile(ctx, order).items():
            base = next(v for v in variants if v["model"] == name and v["variant"] == "eager fp32")
            gf = (base["gflops"] * base["seconds"] / r["seconds"]) if "seconds" in r and "gflops" in base else None
            variants.append({"model": name, "variant": "torch.compile", **r, "threads": threads, "gflops": gf,
                             "matmul_fraction": gf / peak["fp32"] if gf else None})
    ctx.results["sections"]["roofline"] = {"matmul": {"n": n, "gflops_by_threads": rates}, "peaks": peaks,
                                           "rows": rows, "variants": variants}
    side = ctx.px(CONV_SIDE, 8)
    ctx.table("roofline", f"Peaks on {dev.type} with {threads} threads, measured in this run: a {n}x{n} matmul and a "
              f"3x3 {CONV_CHANNELS}->{CONV_CHANNELS} convolution on {side}x{side} (channels_last), in each "
              f"precision's own tensors", ["precision", "matmul GFLOP/s", "conv GFLOP/s", "peak GFLOP/s"],
              [[label, p["matmul"], p["conv"], peak[label]] for label, p in peaks.items()])
    ctx.table("roofline", f"Roofline: conv/linear FLOPs counted with forward hooks on a 32 px input (per output "
              f"pixel; per image for classifiers and generators); each model eager on {dev.type} with {threads} "
              f"threads, channels_last, in the precision it runs in by default (bf16 autocast only for models "
              f"measured fit for it), against the peak of that precision above",
              ["model", "task", "MFLOP per unit", "unit", "GFLOP per call", "precision", "time (s)", "GFLOP/s",
               "of its peak"],
              [[r["model"], r["task"], r["flops_per_unit"] / 1e6, r["unit"], r["flops_per_unit"] * r["units"] / 1e9,
                r["precision"], r["seconds"] if r["seconds"] is not None else "failed", r["gflops"] or "",
                f"{r['peak_fraction']:.0%}" if r["peak_fraction"] is not None else ""] for r in rows])
    winners = {}
    for v in variants:
        if "seconds" in v and (v["model"] not in winners or v["seconds"] < winners[v["model"]]["seconds"]):
            winners[v["model"]] = v
    for v in variants:
        v["wins"] = winners.get(v["model"]) is v
    ctx.table("roofline", "Roofline variants: time of the same call per variant (compile time and trace time "
              "separate); 'of peak' = against the peak of the variant's precision (with another thread count: the "
              "fp32 matmul at that count); the fastest variant of each model is marked",
              ["model", "variant", "threads", "time (s)", "GFLOP/s", "of peak", "setup (s)", "wins"],
              [[v["model"], v["variant"], v.get("threads", ""), v.get("seconds", "failed"),
                v.get("gflops") or "", f"{v['matmul_fraction']:.0%}" if v.get("matmul_fraction") else "",
                v.get("compile_s") or v.get("prepare_s") or "", "**fastest**" if v["wins"] else v.get("error", "")]
               for v in variants])
    convs = [r for r in rows if r["task"] in ("super-resolution", "denoising", "inpainting")]
    if convs and not any(r["peak_fraction"] is None for r in convs):
        worst = min(convs, key=lambda r: r["peak_fraction"])
        ctx.target("conv_matmul_fraction", worst["peak_fraction"], worst["peak_fraction"] >= 0.4,
                   f"lowest: {worst['model']} at {worst['peak_fraction']:.0%} of the {worst['precision']} peak")
