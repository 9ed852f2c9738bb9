"""Section 1, speed: per task at fixed sizes, the CNN through the pipelines (PIL in, PIL out) next to the
classical methods on the same inputs: median time, throughput and peak memory."""
from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnimg_hub import baselines, pipelines
from cnnimg_hub.degrade import add_noise, random_mask
from cnnimg_hub.runtime import autocast, compute_dtype, dtype_name
from cnnimg_hub.spec import spec_of

from ._measure import CLASSIFY_BATCH, GENERATE_N, SIGMA, TODAY_512, Context, measure

# ----------------------------------------------------------------------------------------------- settings
SR_SIZES = {False: [256, 512], True: [256]}  # square inputs; the light x4 model also runs 512 in --quick (target)
RESTORE_SIZES = [512, 1024]  # denoise and inpaint; BM3D: once per size, and not at 1024 in --quick
COMPILED = ("sr-x4", "denoise", "inpaint")  # also through the pipelines after torch.compile, at 512 (not --quick)
PRECISIONS = ("fp32", "bf16")  # every CNN row in each (and in the default, where that is another one)
SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _row(task, method, size, m, work, unit, cnn_s=None, precision="", default=False) -> dict[str, Any]:
    return {"task": task, "method": method, "input": size, **m, "throughput": work / m["seconds"], "unit": unit,
            "cnn_over_classical": (cnn_s / m["seconds"]) if cnn_s is not None else None, "precision": precision,
            "default": default}


def default_precision(model, device: torch.device) -> str:
    """"fp32", "bf16" or "fp16": what precision="auto" runs `model` in on `device` (its measured decision and the
    CPU's bf16, see runtime.compute_dtype)."""
    restoration = model.task in ("super-resolution", "denoising", "inpainting")
    dtype = compute_dtype("auto", device, spec_of(model).precision,
                          cuda_auto=torch.float16 if restoration else torch.float32)
    return SHORT[dtype_name(dtype)]


def _cnn_rows(ctx: Context, rows: list, task: str, name: str, model, size: str, run, work: float,
              unit: str) -> float:
    """Rows of `run(precision)` in each of PRECISIONS and the default; returns the default's seconds."""
    default = default_precision(model, ctx.device)
    seconds = None
    for precision in dict.fromkeys((*PRECISIONS, default)):
        m = measure(lambda: run(precision), ctx, device=ctx.device)
        rows.append(_row(task, name, size, m, work, unit, precision=precision, default=precision == default))
        seconds = m["seconds"] if precision == default else seconds
    return seconds


def _compiled_row(ctx: Context, task: str, name: str, side: int, run, mpx: float, eager_s: float) -> dict | None:
    """The same pipeline call with torch.compile(model): the first call (compiling, cold cache) timed apart."""
    if name not in COMPILED or side != ctx.px(512) or (ctx.quick and not ctx.args.compile):
        return None
    compiled = torch.compile(ctx.model(name))
    t0 = time.perf_counter()
    run(compiled)
    compile_s = time.perf_counter() - t0
    m = measure(lambda: run(compiled), ctx, warmup=False, device=ctx.device)
    unit = "out Mpx/s" if task.startswith("SR") else "Mpx/s"
    return {**_row(task, f"{name} + torch.compile", f"{side}x{side}", m, mpx, unit), "warmup_s": compile_s,
            "over_eager": m["seconds"] / eager_s}


def bench_speed(ctx: Context) -> None:
    """Per task at fixed sizes, CNN through the pipelines (PIL in, PIL out) and the classical methods alike."""
    rows, dev, cuda = [], ctx.device, ctx.device.type == "cuda"
    gen = torch.Generator().manual_seed(0)
    for name, model in ctx.models("classify").items():
        n, c, s = ctx.px(CLASSIFY_BATCH), model.in_channels, model.image_size
        x = torch.randint(0, 256, (n, c, s, s), generator=gen, dtype=torch.uint8).float().div(255).to(dev)

        def batch(precision):
            with torch.inference_mode(), autocast(dev, compute_dtype(precision, dev)):
                return model(x.contiguous(memory_format=torch.channels_last)).float()

        model.to(memory_format=torch.channels_last)  # as the pipelines run it
        _cnn_rows(ctx, rows, "classify", name, model, f"{n} x {s}x{s}", batch, n, "images/s")
    for name, model in ctx.models("generate").items():
        n = min(ctx.px(GENERATE_N), pipelines.MAX_GENERATE)
        _cnn_rows(ctx, rows, "generate", name, model, f"{n} images",
                  lambda p: pipelines.generate(model, 0, n, seed=0, device=dev, precision=p), n, "images/s")
    classical_sr = {"PIL bicubic": baselines.bicubic, "PIL Lanczos": baselines.lanczos}
    for name, model in ctx.models("sr").items():
        s = int(model.scale)
        sizes = SR_SIZES[ctx.quick] + ([512] if ctx.quick and name == "sr-x4" else [])
        for side in map(ctx.px, sizes):
            img = ctx.image(side, side)
            mpx = (side * s) ** 2 / 1e6
            cnn_s = _cnn_rows(ctx, rows, f"SR x{s}", name, model, f"{side}x{side}",
                              lambda p: pipelines.upscale(model, img, device=dev, precision=p), mpx, "out Mpx/s")
            if row := _compiled_row(ctx, f"SR x{s}", name, side, lambda mod: pipelines.upscale(mod, img, device=dev),
                                    mpx, cnn_s):
                rows.append(row)
            for method, fn in classical_sr.items():
                rows.append(_row(f"SR x{s}", method, f"{side}x{side}", measure(lambda: fn(img, s), ctx), mpx,
                                 "out Mpx/s", cnn_s))
            if name == "sr-x4" and side == ctx.px(512):
                ok = None if cuda or ctx.args.sizes_scale != 1 else cnn_s < 0.1
                ctx.target("sr_x4_512", cnn_s, ok, f"{cnn_s:.3f} s in {default_precision(model, dev)}")
    holes_rng = random.Random(0)
    for side in map(ctx.px, RESTORE_SIZES):
        img, mpx = ctx.image(side, side), side * side / 1e6
        if (model := ctx.model("denoise")) is not None:
            noisy = add_noise(img, SIGMA, 0)
            cnn_s = _cnn_rows(ctx, rows, "denoise", "denoise", model, f"{side}x{side}",
                              lambda p: pipelines.denoise(model, noisy, SIGMA, device=dev, precision=p), mpx, "Mpx/s")
            if row := _compiled_row(ctx, "denoise", "denoise", side,
                                    lambda mod: pipelines.denoise(mod, noisy, SIGMA, device=dev), mpx, cnn_s):
                rows.append(row)
            rows.append(_row("denoise", "OpenCV NLM", f"{side}x{side}",
                             measure(lambda: baselines.nlm_denoise(noisy, SIGMA), ctx), mpx, "Mpx/s", cnn_s))
            if ctx.quick and side > ctx.px(512):
                ctx.note(f"BM3D at {side}x{side} is skipped in --quick (about a minute per call on 2 cores)")
            else:  # warm-up on a small crop (imports, allocations), then one measured call: BM3D takes ~1 min/Mpx
                baselines.bm3d_denoise(noisy.crop((0, 0, 32, 32)), SIGMA)
                rows.append(_row("denoise", "BM3D", f"{side}x{side}",
                                 measure(lambda: baselines.bm3d_denoise(noisy, SIGMA), ctx, warmup=False, repeats=1),
                                 mpx, "Mpx/s", cnn_s))
        if (model := ctx.model("inpaint")) is not None:
            holes = random_mask(side, side, holes_rng)
            mask = Image.fromarray((holes * 255).astype(np.uint8))
            holed = Image.fromarray((np.asarray(img) * (1 - holes[..., None])).astype(np.uint8))
            cnn_s = _cnn_rows(ctx, rows, "inpaint", "inpaint", model, f"{side}x{side}",
                              lambda p: pipelines.inpaint(model, holed, mask, device=dev, precision=p), mpx, "Mpx/s")
            if row := _compiled_row(ctx, "inpaint", "inpaint", side,
                                    lambda mod: pipelines.inpaint(mod, holed, mask, device=dev), mpx, cnn_s):
                rows.append(row)
            for method, fn in {"OpenCV Telea": baselines.telea, "OpenCV NS": baselines.navier_stokes}.items():
                rows.append(_row("inpaint", method, f"{side}x{side}", measure(lambda: fn(holed, mask), ctx), mpx,
                                 "Mpx/s", cnn_s))
    ctx.results["sections"]["speed"] = {"rows": rows}
    _restore_target(ctx, rows)
    mem = "CUDA max allocated" if cuda else "peak RSS minus RSS before (VmHWM reset per config)"
    ctx.table("speed", f"Speed and memory, {dev.type}, {torch.get_num_threads()} threads: median of n calls after a "
              f"warm-up (BM3D: one call); every CNN in fp32 and bf16 (autocast; emulated on CPUs without native "
              f"bf16), **default** = what precision='auto' runs it in (bf16 only for models whose config records a "
              f"measured quality change within tolerance); memory = {mem}; first call = the warm-up (for '+ "
              f"torch.compile' rows: compiling, cold cache, default precision); last column = CNN time (default "
              f"precision) / classical time (< 1: CNN faster), or compiled / eager",
              ["task", "method", "precision", "input", "time (s)", "n", "first call (s)", "throughput", "unit",
               "peak MiB", "CNN/classical"],
              [[r["task"], r["method"], (f"**{r['precision']}** (default)" if r.get("default") else r.get("precision")
                                          or ""), r["input"], r["seconds"], r["repeats"], r.get("warmup_s") or "",
                r["throughput"], r["unit"], r["peak_mib"], r.get("over_eager") or r["cnn_over_classical"] or ""]
               for r in rows])


def _restore_target(ctx: Context, rows: list[dict]) -> None:
    """Every restoration model at 512x512, default precision, against TODAY_512; bf16 only as measured fit."""
    side = ctx.px(512)
    now = {r["method"]: r for r in rows if r.get("default") and r["input"] == f"{side}x{side}"
           and r["method"] in TODAY_512}
    if not now:
        return
    speedups = {name: TODAY_512[name] / r["seconds"] for name, r in now.items()}
    checks = {name: spec_of(ctx.model(name)).precision_check for name in now}
    # bf16 runs only where the config says the quality change was within tolerance (compute_dtype); say so
    fit = all(r["precision"] != "bf16" or (checks[n] and checks[n]["change"] >= -checks[n]["tolerance"])
              for n, r in now.items())
    ok = None if ctx.device.type == "cuda" or ctx.args.sizes_scale != 1 else (
        all(v >= 2 for v in speedups.values()) and fit and set(now) == set(TODAY_512))
    ctx.target("restore_2x", speedups, ok, ", ".join(
        f"{n} {TODAY_512[n]:.3f} -> {now[n]['seconds']:.3f} s ({speedups[n]:.1f}x, {now[n]['precision']}"
        + (f", {checks[n]['change']:+.3f} {checks[n]['metric'].split(' ')[0]}" if checks[n] else ", not measured")
        + ")" for n in now))
