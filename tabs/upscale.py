"""The Super-resolve tab: a CNN upscale next to PIL bicubic, optionally measured on a degraded copy of the upload."""
from __future__ import annotations

import gradio as gr

from cnnimg_hub import compare, degrade, pipelines
from cnnimg_hub.tasks import UPSCALE

from .common import BASELINE_SLOT, MODEL_SLOT, UI_ONLY, ModelStore, examples, handler, image_input, model_picker, \
    open_upload, png_file, refuse
from .restore import Panel, outputs

MAX_OUTPUT_PIXELS = 16_000_000  # a 4 Mpx input at x4 would be 64 Mpx


def check_output_size(image, scale: int, hint: str = "") -> None:
    if image.width * image.height * scale * scale > MAX_OUTPUT_PIXELS:
        raise refuse(f"A {image.width}x{image.height} image at x{scale} would be over {MAX_OUTPUT_PIXELS / 1e6:g} "
                     f"megapixels: upload a smaller image{hint}.")


def create_tab(store: ModelStore) -> None:
    @handler
    def upscale(image, scale, model_name, repo, degrade_first, downsampler="pil-bicubic", progress=gr.Progress()):
        """Enlarge an image 2x or 4x with a small super-resolution CNN (transparency is kept).

        Args:
            image: the image to enlarge (PNG, JPEG or WebP, up to 4 megapixels).
            scale: 2 or 4; picks the shipped model of that scale (a Hub repo brings its own scale).
            model_name: a shipped model, e.g. "sr-x4"; "" to take the first of the scale.
            repo: a Hub repo id ("user/name" or "user/name@revision") used instead of model_name; "" for none.
            degrade_first: treat the upload as the clean original: downscale it by the scale first, then measure
                PSNR/SSIM of the result against it.
            downsampler: how degrade_first downscales: "pil-bicubic" (default), "cv2-cubic", "cv2-linear",
                "cv2-area", "pil-lanczos" or "gaussian-decimate".
        Returns:
            The input and the CNN result as a before/after pair, the result's PNG file, a table and the run info.
        """
        image = open_upload(image)
        progress(0.1, desc="Loading model")
        if not repo and not model_name:
            model_name = (store.names(UPSCALE.name, scale=int(scale)) or [None])[0]
        model = store.get(UPSCALE.name, model_name, repo)
        s = int(model.scale)
        if not degrade_first:
            check_output_size(image, s, " (or tick 'degrade, then restore')")
        progress(0.3, desc=f"Super-resolving x{s}")
        c = compare.upscale(model, image, degrade_first=bool(degrade_first), downsampler=downsampler or "pil-bicubic",
                            device=store.device, precision=store.precision)
        if repo and s != int(scale or s):
            c.lines.append(f"The Hub model is x{s}: the scale choice ({scale}) was not used.")
        return outputs(c)

    @handler
    def upscale_png(image, model_name, repo, progress=gr.Progress()):
        """Enlarge an image with a super-resolution CNN and return only the full-size result as a PNG file.

        Args:
            image: the image to enlarge (PNG, JPEG or WebP, up to 4 megapixels).
            model_name: a shipped model, e.g. "sr-x4" or "sr-x2".
            repo: a Hub repo id used instead of model_name; "" for none.
        Returns:
            The result's PNG file.
        """
        image = open_upload(image)
        progress(0.1, desc="Loading model")
        model = store.get(UPSCALE.name, model_name, repo)
        check_output_size(image, int(model.scale))
        progress(0.3, desc=f"Super-resolving x{model.scale}")
        result, _ = pipelines.upscale(model, image, device=store.device, precision=store.precision)
        return png_file(result, f"sr-x{model.scale}-")

    def scale_changed(scale):
        choices = store.choices(UPSCALE.name, scale=int(scale))
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    scales = sorted({int(c["scale"]) for n, c in store.shipped.items() if c["task"] == UPSCALE.name})
    first = 4 if 4 in scales else (scales or [None])[0]
    with gr.Tab(UPSCALE.title, id=UPSCALE.key):
        with gr.Row():
            with gr.Column():
                image = image_input(label="Image", elem_id="upscale-image", height=320)
                scale = gr.Radio(scales, value=first, label="Scale", visible=bool(scales),
                                 info="Only the scales of the shipped models.")
                model, repo = model_picker(store, UPSCALE.name, **({"scale": first} if scales else {}))
                with gr.Row():
                    degrade_first = gr.Checkbox(False, label="Degrade, then restore (downscale the upload by the "
                                                "scale, measure PSNR/SSIM against it)")
                    downsampler = gr.Dropdown([(v, k) for k, v in degrade.DOWNSAMPLER_NAMES.items()],
                                              value="pil-bicubic", label="Downscale with",
                                              info="Real low-res images are rarely PIL bicubic: try OpenCV cubic.")
                run = gr.Button("Super-resolve", elem_id="upscale-run", variant="primary")
            with gr.Column():
                panel = Panel(UPSCALE.key)
        examples([image, scale, model, repo, degrade_first])
        with gr.Group(visible=False):  # the API-only /upscale_png: image in, the result's PNG out
            api_image, api_png, api_run = image_input(), gr.File(), gr.Button()
    event = run.click(upscale, [image, scale, model, repo, degrade_first, downsampler], panel.outputs,
                      api_name="upscale",
                      api_description="Enlarge an image 2x or 4x with a super-resolution CNN; PIL bicubic follows "
                                      "in the web page.", **MODEL_SLOT)
    panel.wire(event, [("bicubic", BASELINE_SLOT)])
    api_run.click(upscale_png, [api_image, model, repo], api_png, api_name="upscale_png", **MODEL_SLOT,
                  api_description="Enlarge an image with a super-resolution CNN: only the full-size PNG comes back.")
    scale.change(scale_changed, scale, model, **UI_ONLY)
