"""cnnimg-hub demo: classify, generate, super-resolve, inpaint and denoise with small CNNs, next to classical methods.

Run ``python app.py [--host 127.0.0.1] [--port 7860] [--share] [--device auto] [--weights DIR] [--compile]``;
a Hugging Face Space runs the same file (README front matter ``sdk: gradio``, ``app_file: app.py``). The tabs
are built from the model folders in the weights directory (each folder's ``config.json`` says its task), and
any tab can load a Hub repo instead (``user/name`` or ``user/name@revision``). Every event has an ``api_name``,
so the app is also an API (``gradio_client``). Models load lazily, on first use.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
import numpy as np
import torch
from PIL import Image
from scipy.ndimage import maximum_filter

import cnnimg_hub
from cnnimg_hub import baselines, degrade, imageio, metrics, pipelines
from cnnimg_hub._hub import REPO_ID
from cnnimg_hub.errors import CnnImgError

# -------------------------------------------------------------------------------------------------- settings
HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
MAX_FILE_SIZE = "20mb"  # uploads over this are refused by Gradio itself, before any handler runs
MAX_BYTES = 20 * 1024 * 1024  # the same limit for open_image (API callers, examples)
MAX_PIXELS = 4_000_000  # largest input (width x height) any tab accepts
MAX_SR_OUTPUT_PIXELS = 16_000_000  # super-resolution output limit: a 4 Mpx input at x4 would be 64 Mpx
BM3D_MAX_PIXELS = 1_000_000  # BM3D takes seconds per Mpx on a CPU: skipped above this, NLM always runs
BM3D_MIN_SIDE = 16  # bm3d raises below its 8 px block and crashes the whole process (segfault) at exactly 8x8
SEED = 0  # fixed seed of the "degrade, then restore" noise and holes, so runs are comparable
QUEUE_SIZE = 16  # waiting requests beyond this are refused ("queue full") instead of piling up
MODEL_CONCURRENCY = 1  # all model work shares one queue slot: parallel users wait their turn
MODEL_CACHE_SIZE = 8  # loaded models kept in memory, keyed by (source, revision, task, device)
TASKS = {"classify": "image-classification", "generate": "image-generation", "sr": "super-resolution",
         "inpaint": "inpainting", "denoise": "denoising"}
CSS = ".pixelated img { image-rendering: pixelated; }"


# -------------------------------------------------------------------------------------------------- inputs
# Gradio decodes an upload itself before the handler runs, and a corrupt or oversized file then fails with its
# generic "Error". These two inputs hand the file over undecoded (or turn the failure into a clear gr.Error), so
# `imageio.open_image` does the decoding and its limits and messages apply. Instance attributes rather than
# subclasses: Gradio writes a .pyi stub next to the source file of every Component subclass.
def image_input(**kwargs) -> gr.Image:
    """A gr.Image whose handler gets the uploaded file's path (or None), not yet decoded."""
    component = gr.Image(type="filepath", **kwargs)
    decode = component.preprocess

    def preprocess(payload):
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return decode(payload)
        return payload.path

    component.preprocess = preprocess
    return component


def mask_editor(**kwargs) -> gr.ImageEditor:
    """A gr.ImageEditor (PIL background and layers) whose unreadable uploads give a clear gr.Error."""
    component = gr.ImageEditor(type="pil", **kwargs)
    decode = component.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise gr.Error(f"The image in the editor could not be read ({type(e).__name__}); upload a PNG, JPEG "
                           f"or WebP image.") from None

    component.preprocess = preprocess
    return component


def image_output(component: gr.Image | gr.ImageSlider) -> gr.Image | gr.ImageSlider:
    """An output image (or slider pair) whose PIL values are sent as fast PNG files (`png_file`) instead of
    Gradio's own PNG encoding at level 6, which took most of the time of a 512x512 -> 2048x2048 request."""
    encode = component.postprocess

    def postprocess(value):
        if isinstance(value, tuple):
            value = tuple(png_file(v) if isinstance(v, Image.Image) else v for v in value)
        elif isinstance(value, Image.Image):
            value = png_file(value)
        return encode(value)

    component.postprocess = postprocess
    return component


def result_image(label: str, **kwargs) -> gr.Image:
    """A read-only output image, sent as a fast PNG (image_output)."""
    return image_output(gr.Image(label=label, format="png", interactive=False, **kwargs))


# -------------------------------------------------------------------------------------------------- models
@functools.lru_cache(maxsize=MODEL_CACHE_SIZE)
def load_cached(source: str, revision: str | None, task: str, device: str, compile: bool = False) -> torch.nn.Module:
    """One load per (source, revision, task, device, compile); failures are not cached, so a retry tries again.
    With `compile`, torch.compile: the first request of each image size waits for compilation (seconds), later
    ones run up to 2x faster (benchmarks' roofline variants); generators sample through their own methods, so
    compiling does not change them."""
    model = cnnimg_hub.load_model(source, revision, task=task, device=device)
    return torch.compile(model) if compile else model


def scan_weights(weights_dir: Path) -> dict[str, dict]:
    """{folder name: config} of the model folders in `weights_dir` (those with a readable config.json)."""
    found = {}
    for config_path in sorted(Path(weights_dir).glob("*/config.json")):
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError):
            continue  # a half-written folder: it shows up once it is complete and the app restarts
        if isinstance(config, dict) and config.get("task") in TASKS.values():
            found[config_path.parent.name] = config
    return found


def describe(name: str, config: dict) -> str:
    """A dropdown label for a shipped model, made from its config."""
    task = config["task"]
    if task == "image-classification":
        c, h, w = config.get("input_size", [0, 0, 0])
        detail = f"{config.get('color_mode', '?')} {h}x{w}, {len(config.get('label_names') or [])} classes"
    elif task == "image-generation":
        c, h, w = config.get("output_size", [0, 0, 0])
        detail = f"{str(config.get('kind', '?')).upper()}, {h}x{w}"
    elif task == "super-resolution":
        detail = f"x{config.get('scale')}, {config.get('architecture')}"
    else:
        detail = config.get("architecture", "")
    return f"{name} ({detail})"


class ModelStore:
    """The shipped models of one weights folder plus Hub loading; hands out cached, ready-to-run models."""

    def __init__(self, weights_dir: Path, device: str | None = None, compile: bool = False):
        self.weights_dir = Path(weights_dir)
        self.device_preference = None if device in (None, "", "auto") else device
        self.compile = compile
        self.shipped = scan_weights(self.weights_dir)
        self._device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        if self._device is None:  # resolved on first use, not at import
            self._device = pipelines.select_device(self.device_preference)
        return self._device

    def names(self, task: str, **match) -> list[str]:
        """Shipped models of `task` whose config has the values in `match` (e.g. scale=4)."""
        return [n for n, c in self.shipped.items()
                if c["task"] == task and all(c.get(k) == v for k, v in match.items())]

    def choices(self, task: str, **match) -> list[tuple[str, str]]:
        return [(describe(n, self.shipped[n]), n) for n in self.names(task, **match)]

    def get(self, task: str, name: str | None, repo: str | None = None) -> torch.nn.Module:
        """The Hub repo when `repo` is filled in (``user/name`` or ``user/name@revision``), else shipped `name`."""
        repo = (repo or "").strip()
        if repo:
            source, _, revision = repo.partition("@")
            source = source.strip()
            # Only Hub ids here: a public demo must not load (or reveal the existence of) server folders.
            if not REPO_ID.match(source) or ".." in source or Path(source).is_absolute():
                raise gr.Error(f"{source!r} is not a Hub repo id like 'user/name' (or 'user/name@revision'). "
                               f"To use local folders, start the app with --weights DIR.")
            return load_cached(source, revision.strip() or None, task, str(self.device), self.compile)
        if not name:
            raise gr.Error(f"No {task} model: choose one in the dropdown or enter a Hub repo id (user/name).")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or not (self.weights_dir / name).is_dir():
            raise gr.Error(f"{name!r} is not a model folder in {self.weights_dir}; shipped {task} models: "
                           f"{', '.join(self.names(task)) or 'none'}.")
        return load_cached(str(self.weights_dir / name), None, task, str(self.device), self.compile)


# -------------------------------------------------------------------------------------------------- helpers
def user_errors(fn):
    """Turn every deliberate refusal (CnnImgError: bad upload, wrong task, missing repo, Hub down) into a
    gr.Error with its message, so the user reads what to do and never a stack trace."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CnnImgError as e:
            raise gr.Error(str(e)) from None
        except torch.OutOfMemoryError:
            raise gr.Error("Out of memory: try a smaller image.") from None
    return wrapper


def open_upload(src, what: str = "an image") -> Image.Image:
    """An upload (path, or PIL from the editor) -> PIL image in open_image's modes, with the app's limits."""
    if src is None:
        raise gr.Error(f"Upload {what} first.")
    try:
        return imageio.open_image(src, max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)
    except CnnImgError as e:  # name the upload by its file name, not by the server's temp path
        message = str(e).replace(str(src), Path(src).name) if isinstance(src, (str, Path)) else str(e)
        raise gr.Error(f"The upload was refused: {message}") from None


def read_image(src, what: str = "an image") -> Image.Image:
    """An upload (path, or PIL from the editor) -> RGB PIL image; size limits and decoding in open_image."""
    return to_rgb(open_upload(src, what))


def whole_number(value, what: str) -> int:
    """A number from the UI or the API as an int: None, NaN, infinity or text is a gr.Error, not a stack trace."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error(f"{what} must be a whole number, got {value!r}.") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB; transparent pixels become white (as the editor shows them) rather than their hidden colour."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def results_table(rows: list[tuple[str, Image.Image | None, float | None, str]], reference: Image.Image | None,
                  *, border: int = 0, y_channel: bool = False) -> str:
    """Markdown table: method, time and (given the clean `reference`) PSNR / SSIM of each result against it."""
    with_metrics = reference is not None
    head = "| method | time | PSNR (dB) | SSIM |\n|---|---|---|---|" if with_metrics else "| method | time |\n|---|---|"
    lines = [head]
    for name, image, seconds, note in rows:
        t = f"{seconds:.2f} s" if seconds is not None else "-"
        if image is None:
            lines.append(f"| {name} | {note or 'skipped'} |" + (" - | - |" if with_metrics else ""))
        elif with_metrics:
            p = metrics.psnr(reference, image, border=border, y_channel=y_channel)
            s = metrics.ssim(reference, image, border=border, y_channel=y_channel)
            lines.append(f"| {name} | {t} | {p:.2f} | {s:.4f} |")
        else:
            lines.append(f"| {name} | {t} |")
    if with_metrics:
        lines.append("\nMeasured against the clean upload" + (f" on the Y channel, {border} px border cropped."
                                                                if y_channel else "."))
    return "\n".join(lines)


def run_info(info, *extra: str) -> str:
    """RunInfo.summary() (device, dtype, tiling, time), its notes and our own lines, as Markdown."""
    notes = [f"- {n}" for n in getattr(info, "notes", [])] + [e for e in extra if e]
    return "\n\n".join([info.summary(), "\n".join(notes)]) if notes else info.summary()


def random_holes(size: tuple[int, int], seed: int = SEED) -> Image.Image:
    """Free-form strokes and boxes (white = hole), as in training and evaluation, reproducible from `seed`."""
    holes = degrade.random_mask(size[1], size[0], random.Random(seed), coverage=(0.1, 0.25))
    return Image.fromarray((holes > 0.5).astype(np.uint8) * 255)


def editor_mask(editor: dict | None, size: tuple[int, int]) -> Image.Image | None:
    """The union of the editor's drawn layers (non-transparent pixels = hole), resized to `size` with nearest;
    None when nothing was drawn. A fully opaque layer (an uploaded mask) is read as white = hole."""
    union = np.zeros((size[1], size[0]), dtype=bool)
    for layer in (editor or {}).get("layers") or []:
        if layer is None:
            continue
        layer = layer if isinstance(layer, Image.Image) else imageio.open_image(layer, max_pixels=MAX_PIXELS * 4)
        rgba = np.asarray(layer.convert("RGBA"))
        hole = rgba[..., 3] > 0
        if hole.all():
            hole = np.asarray(layer.convert("L")) > 127
        hole_image = Image.fromarray(hole.astype(np.uint8) * 255)
        if hole_image.size != size:
            hole_image = hole_image.resize(size, Image.NEAREST)
        union |= np.asarray(hole_image) > 127
    return Image.fromarray(union.astype(np.uint8) * 255) if union.any() else None


def punch(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with its holes painted white, so no method can see the pixels it has to fill."""
    out = image.copy()
    out.paste((255, 255, 255), mask=mask.convert("L").point(lambda v: 255 if v > 127 else 0))
    return out


def png_file(image: Image.Image, prefix: str = "image-") -> str:
    """`image` as a PNG file in Gradio's cache folder, encoded once per image object.

    imageio.encode_png: a 2048x2048 result takes 0.05 s instead of 0.8 s for Gradio's own encoding (PIL at
    level 6), for a file about 35% larger. Inside Gradio's cache, Gradio serves the file without copying it and
    its `delete_cache` removes it. The path is remembered on the image, so the slider and the download button
    share one encoding.
    """
    path = getattr(image, "_cnnimg_png", None)
    if path and os.path.isfile(path):
        return path
    folder = Path(get_upload_folder()) / "cnnimg"
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".png", dir=folder)
    os.close(fd)
    Path(path).write_bytes(imageio.encode_png(image))
    image._cnnimg_png = path
    return path


def label_names(model) -> list[str]:
    """Class names: the model's own (its config holds them only when they differ from the defaults)."""
    return list(getattr(model, "label_names", None) or model.config.get("label_names") or [])


def class_index(model, class_name) -> int:
    names = label_names(model)
    if class_name in names:
        return names.index(class_name)
    if str(class_name).strip().isdigit() and int(class_name) < len(names):
        return int(class_name)
    raise gr.Error(f"{class_name!r} is not a class of this model; its classes are: {', '.join(names)}.")


def preprocessing_text(config: dict) -> str:
    """What the classifier's config says its input is, in one line."""
    c, h, w = config.get("input_size", ["?", "?", "?"])
    return (f"**Preprocessing** (from config.json): {config.get('color_mode', '?')}, resize the shorter side to "
            f"{min(h, w)} px ({config.get('interpolation', 'bicubic')}), {config.get('crop', 'center')} crop to "
            f"{w}x{h}, values in {config.get('input_range', [0, 1])}; mean/std normalisation inside the model.")


def preprocess_preview(image: Image.Image, config: dict) -> Image.Image:
    """The classifier's input as described by its config (shown small beside the labels)."""
    _, h, w = config["input_size"]
    resample = Image.BILINEAR if config.get("interpolation") == "bilinear" else Image.BICUBIC
    k = max(h / image.height, w / image.width)
    resized = image.resize((max(w, round(image.width * k)), max(h, round(image.height * k))), resample)
    left, top = (resized.width - w) // 2, (resized.height - h) // 2
    return resized.crop((left, top, left + w, top + h)).convert(config.get("color_mode", "RGB"))


# -------------------------------------------------------------------------------------------------- handlers
@user_errors
def classify_image(store: ModelStore, image, model_name, repo, progress=gr.Progress()):
    """image -> (top-5 labels, preprocessed input, preprocessing line, run info)."""
    image = read_image(image)
    progress(0.2, desc="Loading model")
    model = store.get(TASKS["classify"], model_name, repo)
    progress(0.5, desc="Classifying")
    top, info = pipelines.classify(model, image, top_k=5, device=store.device)
    return ({label: float(p) for label, p in top}, preprocess_preview(image, model.config),
            preprocessing_text(model.config), run_info(info))


@user_errors
def classify_model_changed(store: ModelStore, model_name, repo):
    """The preprocessing line of the chosen classifier (UI only; the Hub model is loaded to read its config)."""
    if not model_name and not (repo or "").strip():
        return ""
    return preprocessing_text(store.get(TASKS["classify"], model_name, repo).config)


@user_errors
def generate_images(store: ModelStore, model_name, repo, class_name, seed, num_images, progress=gr.Progress()):
    """(class, seed, count) -> (images, run info). The same seed gives the same images."""
    num_images = whole_number(num_images, "Number of images")
    if not 1 <= num_images <= 64:
        raise gr.Error(f"Number of images must be between 1 and 64, got {num_images}.")
    progress(0.2, desc="Loading model")
    model = store.get(TASKS["generate"], model_name, repo)
    progress(0.5, desc="Generating")
    images, info = pipelines.generate(model, class_index(model, class_name), num_images,
                                      whole_number(seed or 0, "Seed"), device=store.device)
    return images, run_info(info)


@user_errors
def interpolate_images(store: ModelStore, model_name, repo, class_name, seed_a, seed_b, steps,
                       progress=gr.Progress()):
    """(class, seed A, seed B, steps) -> the decoded images along the path between the two seeds' latents."""
    progress(0.2, desc="Loading model")
    model = store.get(TASKS["generate"], model_name, repo)
    progress(0.5, desc="Interpolating")
    images, info = pipelines.interpolate(model, class_index(model, class_name), whole_number(seed_a or 0, "Seed A"),
                                         whole_number(seed_b or 0, "Seed B"), whole_number(steps, "Steps"),
                                         device=store.device)
    return images, run_info(info)


@user_errors
def generator_changed(store: ModelStore, model_name, repo):
    """Class choices of the chosen generator, and the interpolation row shown for a VAE (UI only)."""
    if not model_name and not (repo or "").strip():
        return gr.update(choices=[], value=None), gr.update(visible=False)
    model = store.get(TASKS["generate"], model_name, repo)
    names = label_names(model)
    return (gr.update(choices=names, value=names[0] if names else None),
            gr.update(visible=model.config.get("kind") == "vae"))


@user_errors
def upscale_image(store: ModelStore, image, scale, model_name, repo, degrade_first, progress=gr.Progress()):
    """image -> ((nearest-upscaled input, CNN), PIL bicubic, PNG path, results table, run info).

    With `degrade_first`, the upload is taken as the clean high-resolution image: it is bicubic-downscaled by the
    model's scale, restored, and the results are measured against it (Y channel, `scale` px border).
    """
    image = read_image(image)
    progress(0.1, desc="Loading model")
    model = store.get(TASKS["sr"], model_name, repo)
    s = int(model.config.get("scale", scale))
    reference = None
    if degrade_first:
        w, h = image.width // s * s, image.height // s * s
        if w < s or h < s:
            raise gr.Error(f"The image is smaller than the scale ({s}); upload a bigger one.")
        reference = image.crop((0, 0, w, h))
        image = degrade.bicubic_down(reference, s)
    check_sr_output(image, s, " (or tick 'degrade, then restore')")
    progress(0.3, desc=f"Super-resolving x{s}")
    sr, info = pipelines.upscale(model, image, device=store.device)
    bicubic, t_bicubic = timed(baselines.bicubic, image, s)
    before = image.resize(sr.size, Image.NEAREST)
    table = results_table([(f"CNN ({model.config.get('model_name')})", sr, info.seconds, ""),
                           ("PIL bicubic", bicubic, t_bicubic, "")], reference,
                          border=s if reference is not None else 0, y_channel=reference is not None)
    note = f"Input {image.width}x{image.height} -> output {sr.width}x{sr.height} (x{s})."
    if repo and s != int(scale):
        note += f" The Hub model is x{s}: the scale radio ({scale}) was not used."
    return (before, sr), bicubic, png_file(sr, f"sr-x{s}-"), table, run_info(info, note)


@user_errors
def upscale_png(store: ModelStore, image, model_name, repo, progress=gr.Progress()):
    """image -> the CNN's full-size result as a PNG file, and nothing else.

    The lean API endpoint (/upscale_png) for scripts that want the result: /upscale also makes the bicubic
    comparison, the slider's preview and the table, and sends all of them.
    """
    image = read_image(image)
    progress(0.1, desc="Loading model")
    model = store.get(TASKS["sr"], model_name, repo)
    s = int(model.config.get("scale", 1))
    check_sr_output(image, s)
    progress(0.3, desc=f"Super-resolving x{s}")
    sr, _ = pipelines.upscale(model, image, device=store.device)
    return png_file(sr, f"sr-x{s}-")


def check_sr_output(image: Image.Image, s: int, hint: str = "") -> None:
    if image.width * image.height * s * s > MAX_SR_OUTPUT_PIXELS:
        raise gr.Error(f"A {image.width}x{image.height} input at x{s} would be over {MAX_SR_OUTPUT_PIXELS:,} "
                       f"output pixels; upload a smaller image{hint}.")


def sr_scale_changed(store: ModelStore, scale):
    """The shipped super-resolution models of the chosen scale (UI only)."""
    choices = store.choices(TASKS["sr"], scale=int(scale))
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


def remember_upload(editor):
    """The full-resolution background of a fresh upload into the editor, kept for the inpaint handler."""
    return (editor or {}).get("background")


@user_errors
def inpaint_image(store: ModelStore, editor, original, mask_upload, dilate, degrade_first, model_name, repo,
                  progress=gr.Progress()):
    """(editor with a drawn mask | uploaded mask) -> (input with holes, CNN, Telea, results table, run info).

    With `degrade_first`, the upload is taken as the clean image: the drawn mask, or random holes (fixed seed) when
    none is drawn, is punched into it, restored, and the results are measured against it.
    """
    background = (editor or {}).get("background")
    if background is None:
        raise gr.Error("Upload an image into the editor first.")
    image = read_image(background)
    if original is not None and original.width >= image.width and \
            abs(original.width / original.height - image.width / image.height) < 0.01:
        image = read_image(original)  # the editor may have shown us a downscaled copy
    if mask_upload is not None:
        holes = pipelines.mask_to_holes(open_upload(mask_upload, "a mask"))
        mask = Image.fromarray(holes.astype(np.uint8) * 255).resize(image.size, Image.NEAREST) if holes.any() else None
    else:
        mask = editor_mask(editor, image.size)
    if mask is None and not degrade_first:
        raise gr.Error("Draw over the area to fill with the brush (or upload a mask, white = hole), or tick "
                       "'degrade, then restore' to punch random holes.")
    if mask is None:
        mask = random_holes(image.size)
    reference = image if degrade_first else None
    holed = punch(image, mask) if degrade_first else image
    progress(0.2, desc="Loading model")
    model = store.get(TASKS["inpaint"], model_name, repo)
    progress(0.4, desc="Inpainting")
    result, info = pipelines.inpaint(model, holed, mask, dilate=int(dilate), device=store.device)
    if dilate:  # the baseline fills the same holes, dilated as the pipeline does
        holes = maximum_filter(np.asarray(mask) > 127, size=2 * int(dilate) + 1)
        mask = Image.fromarray(holes.astype(np.uint8) * 255)
    telea, t_telea = timed(baselines.telea, holed, mask)
    table = results_table([(f"CNN ({model.config.get('model_name')})", result, info.seconds, ""),
                           ("OpenCV Telea", telea, t_telea, "")], reference)
    hole_share = float(np.mean(np.asarray(mask) > 127))
    return (punch(image, mask), result, telea, table,
            run_info(info, f"Image {image.width}x{image.height}, {hole_share:.1%} of it to fill."))


@user_errors
def denoise_image(store: ModelStore, image, sigma, auto, degrade_first, model_name, repo, progress=gr.Progress()):
    """image -> (noisy input, CNN, BM3D, NLM, results table, run info).

    With `degrade_first`, the upload is taken as clean: Gaussian noise at `sigma` (fixed seed) is added, removed,
    and the results measured against it. With `auto`, the CNN and the baselines use the estimated noise level.
    """
    clean = read_image(image)
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise gr.Error(f"Noise level must be a number between 0 and 75, got {sigma!r}.") from None
    if not 0 <= sigma <= 75:
        raise gr.Error(f"Noise level must be between 0 and 75, got {sigma}.")
    noisy = degrade.add_noise(clean, sigma, SEED) if degrade_first else clean
    progress(0.1, desc="Loading model")
    model = store.get(TASKS["denoise"], model_name, repo)
    progress(0.2, desc="Denoising (CNN)")
    max_sigma = float(model.config.get("max_sigma") or 75)
    if not auto and sigma > max_sigma:
        raise gr.Error(f"This model removes noise up to sigma {max_sigma:g}; lower the noise level or tick Auto.")
    result, info = pipelines.denoise(model, noisy, None if auto else sigma, device=store.device)
    used = info.used["sigma"]  # what the CNN really used (estimated and clamped on auto): the baselines get the same
    baseline_sigma = max(used, 1.0)  # both baselines need a positive strength
    if min(noisy.size) < BM3D_MIN_SIDE:
        bm3d, t_bm3d = None, None
        bm3d_note = f"skipped: the image is smaller than {BM3D_MIN_SIDE} px (BM3D's blocks do not fit)"
    elif noisy.width * noisy.height <= BM3D_MAX_PIXELS:
        progress(0.5, desc="Denoising (BM3D)")
        bm3d, t_bm3d = timed(baselines.bm3d_denoise, noisy, baseline_sigma)
        bm3d_note = ""
    else:
        bm3d, t_bm3d = None, None
        bm3d_note = f"skipped: the image is over {BM3D_MAX_PIXELS / 1e6:g} Mpx (BM3D takes seconds per Mpx)"
    progress(0.8, desc="Denoising (non-local means)")
    nlm, t_nlm = timed(baselines.nlm_denoise, noisy, baseline_sigma)
    table = results_table([(f"CNN ({model.config.get('model_name')})", result, info.seconds, ""),
                           ("BM3D", bm3d, t_bm3d, bm3d_note), ("OpenCV non-local means", nlm, t_nlm, "")],
                          clean if degrade_first else None)
    level = f"Noise level used: {used:.1f}" + (" (estimated)" if auto else "") + \
        (f"; noise added: sigma {sigma:g}, seed {SEED}." if degrade_first else ".")
    return noisy, result, bm3d, nlm, table, run_info(info, level)


# -------------------------------------------------------------------------------------------------- layout
def model_picker(store: ModelStore, task: str, label: str, **match) -> tuple[gr.Dropdown, gr.Textbox]:
    """A dropdown of the shipped models of `task` and a Hub repo box. With `match` (a filter that other inputs
    change), the API may name any shipped model of the task: ModelStore.get checks the name."""
    choices = store.choices(task, **match)
    dropdown = gr.Dropdown(choices, value=choices[0][1] if choices else None, label=label,
                           allow_custom_value=bool(match),
                           info=None if choices else f"No shipped {task} model in the weights folder: use a Hub repo.")
    repo = gr.Textbox(label="or a Hub repo (user/name or user/name@revision)", placeholder="user/name",
                      info="When filled in, it is used instead of the dropdown.")
    return dropdown, repo


def example_block(component, label: str = "Examples"):
    if EXAMPLES:
        gr.Examples([[p] for p in EXAMPLES], inputs=[component], label=label)


def build_demo(weights_dir: Path, device: str | None = None, compile: bool = False) -> gr.Blocks:
    """The whole app for the model folders in `weights_dir`; models load on first use on `device` (auto), and
    are torch.compiled with `compile` (see load_cached)."""
    store = ModelStore(weights_dir, device, compile)
    bind = lambda fn: functools.partial(fn, store)  # noqa: E731  (handlers take the store first)
    model_events = dict(concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)
    ui_only = dict(api_visibility="private", queue=False)

    with gr.Blocks(title="cnnimg-hub", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# cnnimg-hub\nSmall CNNs for classic image tasks, side by side with the classical methods. "
                    "Each tab runs a shipped model or any Hub repo made with cnnimg-hub.")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify"):
                with gr.Row():
                    with gr.Column():
                        c_image = image_input(label="Image (upload or paste)", elem_id="classify-image", height=320)
                        c_model, c_repo = model_picker(store, TASKS["classify"], "Classifier")
                        c_button = gr.Button("Classify", elem_id="classify-run", variant="primary")
                        example_block(c_image)
                    with gr.Column():
                        c_labels = gr.Label(elem_id="classify-labels", num_top_classes=5, label="Top 5")
                        c_prep_text = gr.Markdown(preprocessing_text(store.shipped[c_model.value])
                                                  if c_model.value else "")
                        c_preview = result_image("Model input", height=128, width=128, elem_classes="pixelated")
                        c_info = gr.Markdown()
            with gr.Tab("Generate", id="generate"):
                g_default = store.shipped.get(store.names(TASKS["generate"])[0]) if store.names(
                    TASKS["generate"]) else {}
                g_classes = list(g_default.get("label_names") or [])
                with gr.Row():
                    with gr.Column():
                        g_model, g_repo = model_picker(store, TASKS["generate"], "Generator")
                        g_class = gr.Dropdown(g_classes, value=g_classes[0] if g_classes else None, label="Class",
                                              allow_custom_value=True)
                        g_seed = gr.Number(0, label="Seed", precision=0)
                        g_count = gr.Slider(1, 64, value=16, step=1, label="Number of images")
                        g_button = gr.Button("Generate", elem_id="generate-run", variant="primary")
                    with gr.Column():
                        g_gallery = gr.Gallery(elem_id="generate-gallery", label="Samples", columns=5, height="auto",
                                               format="png", elem_classes="pixelated")
                        g_info = gr.Markdown()
                with gr.Group(visible=g_default.get("kind") == "vae") as g_interp_row:
                    gr.Markdown("**Latent interpolation** (VAE): decode the spherical path between two "
                                "seeds' latents.")
                    with gr.Row():
                        g_seed_a = gr.Number(0, label="Seed A", precision=0)
                        g_seed_b = gr.Number(1, label="Seed B", precision=0)
                        g_steps = gr.Slider(2, 16, value=8, step=1, label="Steps")
                        g_interp_button = gr.Button("Interpolate")
                    g_strip = gr.Gallery(label="Interpolation", columns=16, rows=1, height=140, format="png",
                                         elem_classes="pixelated")
            with gr.Tab("Super-resolve", id="sr"):
                sr_scales = sorted({int(c.get("scale", 0)) for c in store.shipped.values()
                                    if c["task"] == TASKS["sr"]})
                with gr.Row():
                    with gr.Column():
                        s_image = image_input(label="Image", elem_id="sr-image", height=320)
                        s_scale = gr.Radio([2, 3, 4], value=4 if 4 in sr_scales or not sr_scales else sr_scales[0],
                                           label="Scale")
                        s_model, s_repo = model_picker(store, TASKS["sr"], "Model", scale=s_scale.value)
                        s_degrade = gr.Checkbox(False, label="Degrade, then restore (bicubic-downscale the upload "
                                                "by the scale, measure PSNR/SSIM against it)")
                        s_button = gr.Button("Super-resolve", elem_id="sr-run", variant="primary")
                        example_block(s_image)
                    with gr.Column():
                        s_slider = image_output(gr.ImageSlider(elem_id="sr-slider", label="Input (nearest) | CNN",
                                                               format="png", type="pil"))
                        s_bicubic = result_image("PIL bicubic", elem_id="sr-bicubic")
                        s_download = gr.DownloadButton("Download the full-size PNG")
                        s_table = gr.Markdown(elem_id="sr-table", )
                        s_info = gr.Markdown()
                with gr.Group(visible=False):  # the API-only /upscale_png: image in, the result's PNG out
                    s_api_image, s_api_png, s_api_button = image_input(), gr.File(), gr.Button()
            with gr.Tab("Inpaint", id="inpaint"):
                i_original = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        i_editor = mask_editor(elem_id="inpaint-editor", label="Image: paint over what to fill",
                                              brush=gr.Brush(default_size=24, colors=["#ff00ff"],
                                                             color_mode="fixed"),
                                              transforms=(), sources=("upload", "clipboard"), height=420)
                        with gr.Accordion("Mask upload (optional, white = hole)", open=False):
                            i_mask = image_input(label="Mask", height=200)
                        i_dilate = gr.Slider(0, 16, value=0, step=1, label="Mask dilation (px)")
                        i_model, i_repo = model_picker(store, TASKS["inpaint"], "Model")
                        i_degrade = gr.Checkbox(False, label="Degrade, then restore (punch the drawn mask, or "
                                                "random holes when none is drawn, measure PSNR/SSIM)")
                        i_button = gr.Button("Inpaint", elem_id="inpaint-run", variant="primary")
                        example_block(i_editor)
                    with gr.Column():
                        i_holed = result_image("Holes")
                        with gr.Row():
                            i_result = result_image("CNN", elem_id="inpaint-result")
                            i_telea = result_image("OpenCV Telea", elem_id="inpaint-telea")
                        i_table = gr.Markdown(elem_id="inpaint-table", )
                        i_info = gr.Markdown()
            with gr.Tab("Denoise", id="denoise"):
                with gr.Row():
                    with gr.Column():
                        d_image = image_input(label="Image", elem_id="denoise-image", height=320)
                        d_model, d_repo = model_picker(store, TASKS["denoise"], "Model")
                        # the slider spans what the default model removes (its config's max_sigma)
                        d_max = float(store.shipped.get(d_model.value, {}).get("max_sigma") or 75)
                        d_sigma = gr.Slider(0, d_max, value=min(25, d_max), step=1,
                                            label="Noise level (sigma, 0-255 scale)")
                        d_auto = gr.Checkbox(False, label="Auto (estimate the noise level from the image)")
                        d_degrade = gr.Checkbox(False, label="Degrade, then restore (add noise at sigma, seed "
                                                f"{SEED}, measure PSNR/SSIM)")
                        d_button = gr.Button("Denoise", elem_id="denoise-run", variant="primary")
                        example_block(d_image)
                    with gr.Column():
                        d_noisy = result_image("Input")
                        with gr.Row():
                            d_result = result_image("CNN", elem_id="denoise-result")
                            d_bm3d = result_image("BM3D")
                            d_nlm = result_image("Non-local means")
                        d_table = gr.Markdown(elem_id="denoise-table", )
                        d_info = gr.Markdown()

        # ---------------------------------------------------------------------------------------- events
        c_button.click(bind(classify_image), [c_image, c_model, c_repo], [c_labels, c_preview, c_prep_text, c_info],
                       api_name="classify", **model_events)
        c_model.change(bind(classify_model_changed), [c_model, c_repo], c_prep_text, **ui_only)
        g_button.click(bind(generate_images), [g_model, g_repo, g_class, g_seed, g_count], [g_gallery, g_info],
                       api_name="generate", **model_events)
        g_interp_button.click(bind(interpolate_images), [g_model, g_repo, g_class, g_seed_a, g_seed_b, g_steps],
                              [g_strip, g_info], api_name="interpolate", **model_events)
        gr.on([demo.load, g_model.change, g_repo.submit], bind(generator_changed), [g_model, g_repo],
              [g_class, g_interp_row], **ui_only)
        s_scale.change(bind(sr_scale_changed), s_scale, s_model, **ui_only)
        s_button.click(bind(upscale_image), [s_image, s_scale, s_model, s_repo, s_degrade],
                       [s_slider, s_bicubic, s_download, s_table, s_info], api_name="upscale", **model_events)
        s_api_button.click(bind(upscale_png), [s_api_image, s_model, s_repo], s_api_png, api_name="upscale_png",
                           **model_events)
        i_editor.upload(remember_upload, i_editor, i_original, **ui_only)
        i_editor.clear(lambda: None, None, i_original, **ui_only)
        i_button.click(bind(inpaint_image), [i_editor, i_original, i_mask, i_dilate, i_degrade, i_model, i_repo],
                       [i_holed, i_result, i_telea, i_table, i_info], api_name="inpaint", **model_events)
        d_button.click(bind(denoise_image), [d_image, d_sigma, d_auto, d_degrade, d_model, d_repo],
                       [d_noisy, d_result, d_bm3d, d_nlm, d_table, d_info], api_name="denoise", **model_events)
    demo.store = store  # for tests and scripts
    demo.queue(max_size=QUEUE_SIZE)
    return demo


demo = build_demo(Path(os.environ.get("CNNIMG_WEIGHTS", "weights")), os.environ.get("CNNIMG_DEVICE"),
                  os.environ.get("CNNIMG_COMPILE", "") not in ("", "0"))


# -------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also make a temporary public gradio.live link")
    parser.add_argument("--device", default=os.environ.get("CNNIMG_DEVICE", "auto"), help="auto, cpu, cuda, ...")
    parser.add_argument("--weights", default=os.environ.get("CNNIMG_WEIGHTS", "weights"),
                        help="folder of model folders (each with config.json, model.safetensors, README.md)")
    parser.add_argument("--compile", action="store_true", default=demo.store.compile,
                        help="torch.compile the models (env CNNIMG_COMPILE=1): the first request of each image size "
                             "waits seconds for compilation, later ones run up to 2x faster")
    args = parser.parse_args(argv)
    app = demo
    if Path(args.weights) != demo.store.weights_dir or (args.device or "auto") != (demo.store.device_preference
                                                                                    or "auto") \
            or args.compile != demo.store.compile:
        app = build_demo(Path(args.weights), args.device, args.compile)
    if not app.store.shipped:
        print(f"cnnimg-hub: no model folders in {args.weights}; the tabs can still load Hub repos.", flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
               allowed_paths=[str(EXAMPLES_DIR)], css=CSS, prevent_thread_lock=True)
    if args.share and not app.share_url:
        print(f"cnnimg-hub: the public share link could NOT be created (no connection to the Gradio share "
              f"server); the app is only available locally at {app.local_url}", flush=True)
    app.block_thread()


if __name__ == "__main__":
    main()
