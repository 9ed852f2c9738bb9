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

from ._measure import CLASSIFY_BATCH, GENERATE_N, SIGMA, Context, measure

# ----------------------------------------------------------------------------------------------- settings
SR_SIZES = {False: [256, 512], True: [256]}  # square inputs; the light x4 model also runs 512 in --quick (target)
RESTORE_SIZES = [512, 1024]  # denoise and inpaint; BM3D: once per size, and not at 1024 in --quick
COMPILED = ("sr-x4", "denoise", "inpaint")  # also through the pipelines after torch.compile, at 512 (not --quick)


def _row(task, method, size, m, work, unit, cnn_s=None) -> dict[str, Any]:
    return {"task": task, "method": method, "input": size, **m, "throughput": work / m["seconds"], "unit": unit,
            "cnn_over_classical": (cnn_s / m["seconds"]) if cnn_s is not None else None}


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
            if row := _compiled_row(ctx, f"SR x{s}", name, side, lambda mod: pipelines.upscale(mod, img, device=dev),
                                    mpx, m["seconds"]):
                rows.append(row)
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
            if row := _compiled_row(ctx, "denoise", "denoise", side,
                                    lambda mod: pipelines.denoise(mod, noisy, SIGMA, device=dev), mpx, m["seconds"]):
                rows.append(row)
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
            if row := _compiled_row(ctx, "inpaint", "inpaint", side,
                                    lambda mod: pipelines.inpaint(mod, holed, mask, device=dev), mpx, m["seconds"]):
                rows.append(row)
            for method, fn in {"OpenCV Telea": baselines.telea, "OpenCV NS": baselines.navier_stokes}.items():
                rows.append(_row("inpaint", method, f"{side}x{side}", measure(lambda: fn(holed, mask), ctx), mpx,
                                 "Mpx/s", m["seconds"]))
    ctx.results["sections"]["speed"] = {"rows": rows}
    mem = "CUDA max allocated" if cuda else "peak RSS minus RSS before (VmHWM reset per config)"
    ctx.table("speed", f"Speed and memory, {dev.type}, {torch.get_num_threads()} threads: median of n calls after a "
              f"warm-up (BM3D: one call); memory = {mem}; first call = the warm-up (for '+ torch.compile' rows: "
              f"compiling, cold cache); last column = CNN time / classical time (< 1: CNN faster), or compiled / eager",
              ["task", "method", "input", "time (s)", "n", "first call (s)", "throughput", "unit", "peak MiB",
               "CNN/classical"],
              [[r["task"], r["method"], r["input"], r["seconds"], r["repeats"], r.get("warmup_s") or "",
                r["throughput"], r["unit"], r["peak_mib"], r.get("over_eager") or r["cnn_over_classical"] or ""]
               for r in rows])
