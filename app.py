"""cnnimg-hub demo: classify, generate, super-resolve, inpaint and denoise with small CNNs, next to classical methods.

Run ``python app.py [--host 127.0.0.1] [--port 7860] [--share] [--device auto] [--precision auto] [--weights DIR]
[--compile] [--mcp]``; a Hugging Face Space runs the same file (README front matter ``sdk: gradio``,
``app_file: app.py``). Each tab is a module of `tabs/`; this file only assembles them. The tabs list the model
folders of the weights directory (each folder's ``config.json`` says its task) and load Hub repos too (``user/name``
or ``user/name@revision``). Every model event has an ``api_name`` (``gradio_client``), and ``--mcp`` (or
``CNNIMG_MCP=1`` on a Space) also serves them as MCP tools at ``/gradio_api/mcp/``.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import gradio as gr

from cnnimg_hub import runtime
from tabs import TABS
from tabs.common import EXAMPLES_DIR, MAX_FILE_SIZE, ModelStore, cache_block_signatures

QUEUE_SIZE = 16  # waiting requests beyond this are refused ("queue full") instead of piling up
CSS = ".pixelated img { image-rendering: pixelated; }"


def build_demo(weights_dir: Path, device: str | None = None, compile: bool = False,
               precision: str | None = None) -> gr.Blocks:
    """The whole app for the model folders in `weights_dir`; models load on first use on `device` (auto), run in
    `precision` (auto: bf16 on a CPU with native bf16 for the models whose config.json says their quality holds in
    it, see `cnnimg_hub.runtime.compute_dtype`), and are torch.compiled with `compile` (the first request of each
    image size waits seconds, later ones run faster)."""
    cache_block_signatures()  # each REST call is a new Gradio session: build its config faster
    store = ModelStore(weights_dir, device, compile, precision)
    with gr.Blocks(title="cnnimg-hub", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# cnnimg-hub\nSmall CNNs for classic image tasks, side by side with the classical methods. "
                    "Each tab runs a shipped model or any Hub repo made with cnnimg-hub.")
        with gr.Tabs():
            for tab in TABS:
                tab.create_tab(store)
    demo.store = store  # for tests and scripts
    demo.queue(max_size=QUEUE_SIZE)
    return demo


runtime.keep_freed_memory()  # reuse freed pages between requests (glibc; a no-op elsewhere)
demo = build_demo(Path(os.environ.get("CNNIMG_WEIGHTS", "weights")), os.environ.get("CNNIMG_DEVICE"),
                  os.environ.get("CNNIMG_COMPILE", "") not in ("", "0"), os.environ.get("CNNIMG_PRECISION"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also make a temporary public gradio.live link")
    parser.add_argument("--device", default=os.environ.get("CNNIMG_DEVICE", "auto"), help="auto, cpu, cuda, ...")
    parser.add_argument("--precision", default=os.environ.get("CNNIMG_PRECISION", "auto"),
                        choices=["auto", "fp32", "bf16", "fp16"],
                        help="force a compute precision for every model (env CNNIMG_PRECISION); auto: bf16 on a CPU "
                             "with native bf16 for models measured fit for it, fp16 on CUDA for image-to-image "
                             "models, fp32 otherwise")
    parser.add_argument("--weights", default=os.environ.get("CNNIMG_WEIGHTS", "weights"),
                        help="folder of model folders (each with config.json, model.safetensors, README.md)")
    parser.add_argument("--compile", action="store_true", default=demo.store.compile,
                        help="torch.compile the models (env CNNIMG_COMPILE=1)")
    parser.add_argument("--mcp", action="store_true", default=os.environ.get("CNNIMG_MCP", "") not in ("", "0"),
                        help="also serve every endpoint as an MCP tool at /gradio_api/mcp/ (env CNNIMG_MCP=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = demo
    if (Path(args.weights), args.device or "auto", args.compile, args.precision) != \
            (demo.store.weights_dir, demo.store.device_preference or "auto", demo.store.compile, demo.store.precision):
        app = build_demo(Path(args.weights), args.device, args.compile, args.precision)
    if not app.store.shipped:
        print(f"cnnimg-hub: no model folders in {args.weights}; the tabs can still load Hub repos.", flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
               allowed_paths=[str(EXAMPLES_DIR)], css=CSS, prevent_thread_lock=True, mcp_server=args.mcp)
    if args.share and not app.share_url:
        print(f"cnnimg-hub: the public share link could NOT be created (no connection to the Gradio share "
              f"server); the app is only available locally at {app.local_url}", flush=True)
    app.block_thread()


if __name__ == "__main__":
    main()
