"""The Denoise tab: the CNN first, then non-local means and (when asked) BM3D, each in its own queue."""
from __future__ import annotations

import gradio as gr

from cnnimg_hub import compare
from cnnimg_hub.tasks import DENOISE

from .common import BASELINE_SLOT, BM3D_SLOT, MODEL_SLOT, UI_ONLY, ModelStore, examples, handler, image_input, \
    model_picker, open_upload
from .restore import Panel, outputs


def create_tab(store: ModelStore) -> None:
    @handler
    def denoise(image, sigma, auto, degrade_first, model_name, repo, progress=gr.Progress()):
        """Remove Gaussian noise from an image with a small CNN (transparency is kept).

        Args:
            image: the noisy image (PNG, JPEG or WebP, up to 4 megapixels).
            sigma: the noise level on the 0-255 scale, 0 up to the model's maximum (50 for the shipped model).
            auto: estimate the noise level from the image instead of using sigma.
            degrade_first: treat the upload as clean: add noise of level sigma (seed 0) first, then measure
                PSNR/SSIM of the result against the upload.
            model_name: a shipped denoiser, e.g. "denoise".
            repo: a Hub repo id ("user/name" or "user/name@revision") used instead of model_name; "" for none.
        Returns:
            The input and the CNN result as a before/after pair, the result's PNG file, a table and the run info
            (with the noise level the CNN used).
        """
        image = open_upload(image)
        progress(0.1, desc="Loading model")
        model = store.get(DENOISE.name, model_name, repo)
        progress(0.3, desc="Denoising (CNN)")
        c = compare.denoise(model, image, sigma, auto=bool(auto), degrade_first=bool(degrade_first),
                            device=store.device, precision=store.precision)
        return outputs(c)

    def model_changed(model_name):
        """The noise slider spans what the chosen shipped model removes (its spec's max_sigma)."""
        if model_name not in store.names(DENOISE.name):
            return gr.update()
        top = float(store.spec(model_name).max_sigma or 50)
        return gr.update(maximum=top)

    with gr.Tab(DENOISE.title, id=DENOISE.key):
        with gr.Row():
            with gr.Column():
                image = image_input(label="Image", elem_id="denoise-image", height=320)
                model, repo = model_picker(store, DENOISE.name)
                top = float(store.spec(model.value).max_sigma or 50) if model.value else 50.0
                sigma = gr.Slider(0, top, value=min(25, top), step=1, label="Noise level (sigma, 0-255 scale)")
                auto = gr.Checkbox(False, label="Auto (estimate the noise level from the image)")
                degrade = gr.Checkbox(False, label="Degrade, then restore (add noise at sigma, seed "
                                      f"{compare.SEED}, measure PSNR/SSIM)")
                bm3d = gr.Checkbox(True, label="Also run BM3D (the strongest classical method; it takes tens of "
                                   "seconds per megapixel, after the CNN result, in its own queue)",
                                   info=f"Images over {compare.BM3D_MAX_PIXELS / 1e6:g} megapixel skip it.")
                run = gr.Button("Denoise", elem_id="denoise-run", variant="primary")
            with gr.Column():
                panel = Panel(DENOISE.key)
        examples([image, sigma, auto, degrade, model, repo])
    event = run.click(denoise, [image, sigma, auto, degrade, model, repo], panel.outputs, api_name="denoise",
                      api_description="Remove Gaussian noise from an image with a CNN; non-local means and BM3D "
                                      "follow in the web page.", **MODEL_SLOT)
    panel.wire(event, [("nlm", BASELINE_SLOT), ("bm3d", BM3D_SLOT)], extra_inputs=[bm3d])
    model.change(model_changed, model, sigma, **UI_ONLY)
