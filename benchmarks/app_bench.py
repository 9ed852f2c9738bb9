"""Section 5, app: cold start of `python app.py` and the overhead of its /upscale_png and /upscale APIs (through
gradio_client) over pipelines.upscale in-process, with the /upscale handler alone in between."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

from cnnimg_hub import imageio, pipelines, runtime

from ._measure import ROOT, Context, measure
from .load_test import free_port, stop_server

# ----------------------------------------------------------------------------------------------- settings
APP_REPEATS = {False: 7, True: 3}
APP_START_TIMEOUT_S = 180


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
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "CNNIMG_WEIGHTS": str(ctx.weights.resolve()),
           "CNNIMG_DEVICE": ctx.device.type, "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    os.environ.update({k: env[k] for k in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "NO_PROXY",
                                           "no_proxy")})
    port = free_port()
    t0 = time.perf_counter()
    log = open(tmp / "app.log", "w")
    # weights and device come from the environment, so the module-level demo is the one served (built once)
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT,
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
        lean = measure(lambda: client.predict(handle_file(str(photo)), name, "", api_name="/upscale_png"), ctx,
                       repeats=n)
        # the in-process call under the app's allocator settings (app.py sets them at import, as `import app`
        # below would here): the overhead is then Gradio's and the PNG's, not glibc's
        runtime.keep_freed_memory()
        direct = measure(lambda: pipelines.upscale(model, Image.open(photo), device=ctx.device), ctx, repeats=n,
                         device=ctx.device)
        result, _ = pipelines.upscale(model, Image.open(photo), device=ctx.device)
        encode = measure(lambda: imageio.encode_png(result), ctx, repeats=n)
        # The handler alone, in-process: splits the overhead into the handler's extra work and Gradio's transport.
        os.environ.update({k: env[k] for k in ("CNNIMG_WEIGHTS", "CNNIMG_DEVICE", "GRADIO_TEMP_DIR")})
        sys.path.insert(0, str(ROOT))
        import app  # noqa: PLC0415  (builds the module-level demo for the same weights)

        upscale = next(f.fn for f in app.demo.fns.values() if f.api_name == "upscale")
        handler = measure(lambda: upscale(str(photo), scale, name, "", False), ctx, repeats=n)
    finally:
        stop_server(proc)  # the app process started above, by its id
        log.close()
    overhead = lean["seconds"] / direct["seconds"] - 1
    ui_overhead = via_api["seconds"] / direct["seconds"] - 1
    r = {"model": name, "input": f"{side}x{side}", "http_200_s": http_s, "first_predict_s": first_s,
         "api_s": via_api["seconds"], "png_api_s": lean["seconds"], "handler_s": handler["seconds"],
         "direct_s": direct["seconds"], "overhead": overhead, "ui_overhead": ui_overhead,
         "handler_overhead": handler["seconds"] / direct["seconds"] - 1, "png_encode_s": encode["seconds"],
         "api": via_api, "png_api": lean, "handler": handler, "direct": direct}
    ctx.results["sections"]["app"] = r
    ctx.table("app", f"App: cold start of `python app.py` (spawn to first HTTP 200, and to the first /upscale "
              f"result through gradio_client, model load included), then medians of {n} calls on the same "
              f"{side}x{side} PNG: pipelines.upscale in-process (direct); /upscale_png through gradio_client (the "
              f"result as a PNG file, nothing else); /upscale through gradio_client (what the UI shows: also PIL "
              f"bicubic, a nearest-neighbour preview, a results table) and its handler called in-process. Overheads "
              f"are over direct; both endpoints encode their images as PNG (imageio.encode_png; 'PNG encode' "
              f"is that alone for the result, in-process) and the client downloads them",
              ["model", "input", "to HTTP 200 (s)", "to first predict (s)", "direct (s)", "PNG encode (s)",
               "/upscale_png (s)", "overhead", "/upscale (s)", "overhead", "of which handler"],
              [[name, r["input"], http_s, first_s, r["direct_s"], r["png_encode_s"], r["png_api_s"],
                f"{overhead:+.0%}", r["api_s"], f"{ui_overhead:+.0%}", f"{r['handler_overhead']:+.0%}"]])
    extra = lean["seconds"] - direct["seconds"]
    ctx.target("upscale_png_0.1s", extra, extra <= 0.1 if ctx.args.sizes_scale == 1 and scale == 4 else None,
               f"{extra:+.3f} s: /upscale_png {lean['seconds']:.3f} s, in-process {direct['seconds']:.3f} s")
    ctx.target("app_overhead", overhead, overhead < 0.2 if ctx.args.sizes_scale == 1 else None,
               f"{overhead:+.0%} through /upscale_png, of which PNG encoding "
               f"{encode['seconds'] / direct['seconds']:+.0%} ({ui_overhead:+.0%} through the UI's /upscale)")
