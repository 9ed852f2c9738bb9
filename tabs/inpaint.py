"""The Inpaint tab: paint over what to fill (or upload a mask), the CNN fills it, OpenCV Telea follows."""
from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from cnnimg_hub import compare, pipelines
from cnnimg_hub.tasks import INPAINT

from .common import BASELINE_SLOT, EXAMPLES, MODEL_SLOT, UI_ONLY, ModelStore, handler, image_input, \
    model_picker, open_upload, refuse
from .restore import Panel, outputs


def mask_editor(**kwargs) -> gr.ImageEditor:
    """A gr.ImageEditor whose background comes as the uploaded file's path when there is one (so transparency
    and full resolution survive; Gradio flattens it on white), and whose unreadable uploads are a clear error."""
    component = gr.ImageEditor(type="pil", **kwargs)
    decode = component.preprocess

    def preprocess(payload):
        try:
            value = decode(payload)
        except (OSError, ValueError, Image.DecompressionBombError):
            raise refuse("The image in the editor could not be read: upload a PNG, JPEG or WebP image.") from None
        path = getattr(getattr(payload, "background", None), "path", None)
        if value is not None and path:
            value["background"] = path
        return value

    component.preprocess = preprocess
    return component


def drawn_mask(editor: dict | None, size: tuple[int, int]) -> np.ndarray:
    """The union of the editor's layers (non-transparent pixels = hole) at `size` (nearest). A fully opaque
    layer (a mask uploaded into the editor) is read as white = hole."""
    union = np.zeros((size[1], size[0]), dtype=bool)
    for layer in (editor or {}).get("layers") or []:
        layer = layer if isinstance(layer, Image.Image) else open_upload(layer, "a layer")
        hole = np.asarray(layer.convert("RGBA"))[..., 3] > 0
        if hole.all():
            hole = np.asarray(layer.convert("L")) > 127
        union |= np.asarray(Image.fromarray(hole).resize(size, Image.NEAREST))
    return union


def create_tab(store: ModelStore) -> None:
    @handler
    def inpaint(editor, original, mask_upload, dilate, degrade_first, model_name, repo, progress=gr.Progress()):
        """Fill the marked holes of an image with a small inpainting CNN (transparency is kept).

        Args:
            editor: the image editor's value: "background" the image, "layers" strokes over the holes.
            mask_upload: a mask image instead of (or besides) strokes, white = hole; None for none.
            dilate: grow the holes by this many pixels (0-16) to cover object borders.
            degrade_first: treat the upload as clean: punch the holes (random ones when none are marked) into it
                first, then measure PSNR/SSIM of the result against the upload.
            model_name: a shipped inpainter, e.g. "inpaint".
            repo: a Hub repo id ("user/name" or "user/name@revision") used instead of model_name; "" for none.
        Returns:
            The input and the CNN result as a before/after pair, the result's PNG file, a table and the run info.
        """
        background = (editor or {}).get("background")
        if background is None:
            raise refuse("Upload an image into the editor first.")
        image = open_upload(background)
        if original is not None:  # the editor may have sent a downscaled copy of the upload
            full = open_upload(original)
            if full.width >= image.width and abs(full.width / full.height - image.width / image.height) < 0.01:
                image = full
        holes = drawn_mask(editor, image.size)
        if mask_upload is not None:  # strokes and an uploaded mask both count
            uploaded = pipelines.mask_to_holes(open_upload(mask_upload, "a mask"))
            holes |= np.asarray(Image.fromarray(uploaded).resize(image.size, Image.NEAREST))
        if not holes.any() and not degrade_first:
            raise refuse("Nothing to fill: paint over the area with the brush (or upload a mask, white = hole), "
                         "or tick 'degrade, then restore' to punch random holes.")
        mask = Image.fromarray(holes.astype(np.uint8) * 255) if holes.any() else None
        progress(0.2, desc="Loading model")
        model = store.get(INPAINT.name, model_name, repo)
        progress(0.4, desc="Inpainting")
        c = compare.inpaint(model, image, mask, dilate=int(dilate or 0), degrade_first=bool(degrade_first),
                            device=store.device, precision=store.precision)
        return outputs(c)

    def remember_upload(editor):
        """The background of a fresh upload into the editor (full resolution), kept for the inpaint handler."""
        return (editor or {}).get("background")

    with gr.Tab(INPAINT.title, id=INPAINT.key):
        original = gr.State(None)
        with gr.Row():
            with gr.Column():
                editor = mask_editor(elem_id="inpaint-editor", label="Image: paint over what to fill",
                                     brush=gr.Brush(default_size=24, colors=["#ff00ff"], color_mode="fixed"),
                                     transforms=(), sources=("upload", "clipboard"), height=420)
                with gr.Accordion("Mask upload (optional, white = hole; added to the strokes)", open=False):
                    mask = image_input(label="Mask", height=200)
                dilate = gr.Slider(0, 16, value=0, step=1, label="Mask dilation (px)")
                model, repo = model_picker(store, INPAINT.name)
                degrade = gr.Checkbox(False, label="Degrade, then restore (punch the marked holes, or random "
                                      "holes when none are marked, measure PSNR/SSIM)")
                run = gr.Button("Inpaint", elem_id="inpaint-run", variant="primary")
            with gr.Column():
                panel = Panel(INPAINT.key)
        if EXAMPLES:
            gr.Examples([[p] for p in EXAMPLES], inputs=[editor], label="Examples")
    event = run.click(inpaint, [editor, original, mask, dilate, degrade, model, repo], panel.outputs,
                      api_name="inpaint", **MODEL_SLOT,
                      api_description="Fill the marked holes of an image with a CNN; OpenCV Telea follows in the "
                                      "web page.")
    panel.wire(event, [("telea", BASELINE_SLOT)])
    editor.upload(remember_upload, editor, original, **UI_ONLY)
    editor.clear(lambda: None, None, original, **UI_ONLY)
