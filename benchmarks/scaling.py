"""Section 3, scaling: x4 SR through pipelines.upscale(tile="auto") from small to large inputs, time per output
Mpx and peak memory, with tile=None beside it while that still fits."""
from __future__ import annotations

import psutil

from cnnimg_hub import pipelines

from ._measure import Context, measure

# ----------------------------------------------------------------------------------------------- settings
SCALING_SIZES = {False: [(256, 256), (512, 512), (1024, 768), (2048, 1536), (4000, 3000)],
                 True: [(256, 256), (512, 384), (1024, 768)]}
UNTILED_MAX_PIXELS = 1024 * 768  # scaling: the tile=None comparison stops here (its memory is what tiling saves)
SCALING_BYTES_PER_OUTPUT_PX = 48  # skip a scaling size when this estimate exceeds half the available memory


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
              f"bounds the activations to one tile; what still grows is the output (the float32 accumulation buffer, "
              f"rounded in place, and the uint8 image: about 20 bytes per output pixel). tile=None for comparison "
              f"up to 1024x768",
              ["input", "output Mpx", "tiles", "time (s)", "s per out Mpx", "peak MiB", "MiB per out Mpx",
               "tile=None time (s)", "tile=None peak MiB"],
              [[r["input"], r["output_mpx"], r["tiles"], r["seconds"], r["s_per_out_mpx"], r["peak_mib"],
                r["mib_per_out_mpx"], r.get("untiled_seconds", ""), r.get("untiled_peak_mib", "")] for r in rows])
