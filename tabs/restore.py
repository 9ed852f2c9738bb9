"""The results panel the three restoration tabs share (Super-resolve, Inpaint, Denoise).

A before/after slider shows the CNN against the input or a classical method (a radio picks which), a gallery
holds every result at full size, the CNN result is downloadable, and a table compares the methods. The CNN's
step fills the panel first (in the model's queue slot); each classical method then adds itself in its own event
and queue (`BASELINE_SLOT`, `BM3D_SLOT`), so a slow baseline never holds the model for other users. What is
shown comes from `cnnimg_hub.compare`: the panel only lays it out.
"""
from __future__ import annotations

import gradio as gr
from PIL import Image

from cnnimg_hub import compare
from cnnimg_hub.compare import Comparison, Method

from .common import UI_ONLY, fast_png, png_file, slider, user_errors

INPUT = "the input"


class Panel:
    """The output components of one restoration tab; `outputs` is what every step returns, in this order."""

    def __init__(self, key: str):
        self.key = key
        self.slider = slider("CNN result (drag to compare)", elem_id=f"{key}-slider")
        self.against = gr.Radio([INPUT], value=INPUT, label="Compare the CNN with", elem_id=f"{key}-against")
        self.download = gr.DownloadButton("Download the CNN result (PNG)", elem_id=f"{key}-download")
        self.table = gr.Markdown(elem_id=f"{key}-table")
        self.info = gr.Markdown(elem_id=f"{key}-info")
        self.gallery = fast_png(gr.Gallery(label="Every result, full size", elem_id=f"{key}-gallery", columns=4,
                                           height="auto", format="png", buttons=["download", "fullscreen"]))
        self.state = gr.State(None)
        self.outputs = [self.slider, self.against, self.gallery, self.download, self.table, self.info, self.state]

    def wire(self, event, steps: list[tuple[str, dict]], extra_inputs=()) -> None:
        """After the CNN `event` succeeds, each (baseline name, queue) step adds one classical method."""
        for name, slot in steps:
            inputs = [self.state, *extra_inputs] if name == "bm3d" else [self.state]
            event = event.success(baseline_step(name), inputs, self.outputs, api_name=f"{self.key}_{name}",
                                  api_visibility="undocumented", show_progress_on=[self.table], **slot)
        self.against.change(show, [self.state, self.against], self.slider, **UI_ONLY)


def view(c: Comparison) -> Image.Image:
    """The input as the slider shows it: at the output's size (nearest: the pixels as they were), holes white.
    Made once per comparison: the slider and the gallery (and every later step) send the same PNG file."""
    if "view" not in c.__dict__:
        if c.task == "inpainting":
            c.view = compare.punch(c.input, c.used["mask"])
        else:
            c.view = c.input.resize(c.cnn.image.size, Image.NEAREST) if c.input.size != c.cnn.image.size else c.input
    return c.view


def show(c: Comparison | None, against: str):
    """The slider's pair: (the input or the chosen method, the CNN)."""
    if c is None:
        return None
    other = next((m.image for m in c.methods[1:] if m.name == against and m.image is not None), None)
    return (other or view(c), c.cnn.image)


def outputs(c: Comparison, against: str = INPUT) -> tuple:
    """Every panel output for the comparison so far, the slider against `against`."""
    done = [m.name for m in c.methods[1:] if m.image is not None]
    gallery = [(view(c), "input" + (" (nearest)" if c.task == "super-resolution" else ""))]
    gallery += [(m.image, m.name) for m in c.methods if m.image is not None]
    return (show(c, against), gr.update(choices=[INPUT, *done], value=against), gallery,
            png_file(c.cnn.image, f"{c.task}-"), compare.table(c), c.summary(), c)


def baseline_step(name: str):
    """The event that runs classical method `name` on a comparison and shows it (BM3D only when asked)."""
    def step(c: Comparison, run: bool = True, progress=gr.Progress()):
        progress(0, desc=f"{compare.NAMES[name]}: running beside the CNN result, in its own queue")
        method = compare.baseline(c, name) if run else Method(compare.NAMES[name], None, None,
                                                                   "not run (tick 'Also run BM3D')")
        c.methods = [m for m in c.methods if m.name != method.name] + [method]
        return outputs(c, method.name if method.image is not None else INPUT)

    step.__name__ = f"compare_{name}"
    step.__doc__ = f"Add {compare.NAMES[name]} to the comparison of the last CNN run of this session."
    return user_errors(step)
