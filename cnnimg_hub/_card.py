"""Model cards: the README.md of a model folder, written from the folder's config and its training record.

A card is a pure function of its inputs (the config, the evaluation results, the training data names, the training
config, a description, the repo id it is pushed to), so it can be rendered again at any time: `read_card` gets
the inputs back from a card this module wrote (or from the older layout), `render_card` writes it. The last line
carries a digest of the text above it, so a push can tell a card we wrote from one edited on the Hub.

Front matter: license, library, pipeline tag, tags, `metrics:`, and only dataset ids that exist on the Hub
(`HUB_DATASETS`); the model-index holds the results on those datasets. The other datasets are named in the text.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from PIL import Image, ImageDraw
from torch import nn

from ._registry import model_class
from .degrade import add_noise, random_mask
from .imageio import to_image, to_tensor
from .tasks import TASKS

# Our dataset names -> the Hub's dataset ids, only for datasets whose Hub copy is the one we trained or tested on:
# the same images (the SR sets as the super-image library publishes them; BSD100 = the BSDS300 test images; CBSD68
# as deepinv publishes it). An evaluation named "<set> (<how the input was made>)" is on <set>'s images.
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10", "fashion_mnist": "zalando-datasets/fashion_mnist",
                "fashion-mnist": "zalando-datasets/fashion_mnist", "Set5": "eugenesiow/Set5",
                "Set14": "eugenesiow/Set14", "BSD100": "eugenesiow/BSD100", "CBSD68": "deepinv/CBSD68"}
SAMPLE = "sample.jpg"  # the before/after picture of a restoration model, beside its README.md
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # photos no model trained or was validated on
MARK = re.compile(r"\n<!-- written by cnnimg-hub \(digest ([0-9a-f]{16})\)[^\n]*-->\n?$")
EVAL_HEADER = "| dataset | split | metric | type | value |"


# ----------------------------------------------------------------------------------------------- rendering
def _no_abs_paths(value: Any) -> Any:
    """Every absolute path in `value` (nested) written as its last component: a card never shows a machine's
    folders."""
    if isinstance(value, dict):
        return {k: _no_abs_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_abs_paths(v) for v in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~") or re.match(r"^[A-Za-z]:\\", value)):
        return Path(value.replace("\\", "/")).name
    return value


def _shown_path(folder: str) -> str:
    """How the usage snippet names a local folder: as given when relative, relative to the working folder when
    inside it, else by its name alone (a card never shows a machine's folders)."""
    path = Path(folder)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name


def _eval_result(r: dict, task: str) -> EvalResult | None:
    """The model-index entry of one result, or None when its dataset has no Hub id."""
    hub_id = HUB_DATASETS.get(r["dataset_name"].split(" (")[0])
    if hub_id is None:
        return None
    return EvalResult(task_type=TASKS[task].pipeline_tag, dataset_type=hub_id, dataset_name=r["dataset_name"],
                      dataset_split=r.get("dataset_split"), metric_type=r["metric_type"],
                      metric_value=r["metric_value"], metric_name=r.get("metric_name"))


def _lineage_lines(lineage: list[dict]) -> list[str]:
    """Markdown: every run that made these weights, and the learning curve over the whole chain (the quick
    validation metric each run logged, against the images seen and wall-hours counted from the first run)."""
    lines = ["## Lineage", "", "| run | started from | steps | images seen | wall-hours |", "|---|---|---|---|---|"]
    lines += [f"| {r.get('run')} | {r.get('init_from') or 'scratch'} | {r.get('steps', 0):,} | "
              f"{r.get('images_seen', 0):,} | {r.get('wall_hours', 0):.2f} |" for r in lineage]
    points, images, hours = [], 0, 0.0
    for r in lineage:
        for p in r.get("curve") or []:
            points.append((r.get("run"), images + p["images_seen"], hours + p["hours"], p["metric"], p["value"]))
        images, hours = images + r.get("images_seen", 0), hours + r.get("wall_hours", 0.0)
    lines += ["", f"Total: {len(lineage)} run(s), {images:,} images seen, {hours:.2f} wall-hours.", ""]
    if points:
        lines += ["Learning curve (quick validation check during training):", "",
                  "| run | images seen (total) | wall-hours (total) | metric | value |", "|---|---|---|---|---|"]
        lines += [f"| {run} | {n:,} | {h:.2f} | {m} | {v:.4g} |" for run, n, h, m, v in points]
        lines += [""]
    return lines


def _uses(config: dict, training: dict) -> tuple[str, str, str]:
    """(intended use, limitations, how it was evaluated) for this task, with what the training config records."""
    task, scale = config["task"], config.get("scale")
    sets = ", ".join(training.get("train_sets") or []) or "the training set"
    if task == "super-resolution":
        methods = training.get("degradations") or ["pil-bicubic"]
        made = ", ".join(dict.fromkeys(methods))
        extra = ""
        if training.get("blur"):
            extra += f"; gaussian-decimate blur std {training['blur'][0]}-{training['blur'][1]} x scale"
        if training.get("jpeg_prob"):
            q = training.get("jpeg_quality") or ["?", "?"]
            extra += f"; a JPEG round trip (quality {q[0]}-{q[1]}) on {training['jpeg_prob']:.0%} of the inputs"
        return (f"Enlarging photos x{scale} (RGB, any size: the pipelines tile large images), as a fast, light "
                f"alternative to bicubic interpolation.",
                f"Trained on clean photo crops ({sets}) whose low-resolution inputs were made by: {made}{extra}. "
                + ("It was trained on PIL bicubic downscaling only: inputs made another way (OpenCV without "
                   "antialiasing, camera pipelines) can come out worse than plain bicubic. " if methods == ["pil-bicubic"]
                   else "Real camera noise, heavy JPEG artefacts and motion blur were not in training. ")
                + "A small CNN restores detail it can infer locally; it does not invent faces or text.",
                f"PSNR and SSIM on the Y channel (BT.601) with {scale} pixels of border cropped, the HR image "
                f"mod-cropped to the scale. The low-resolution input is PIL bicubic unless the dataset's name says "
                f"otherwise: 'MATLAB LR' uses the SelfExSR MATLAB-bicubic files, 'cv2-cubic/-linear/-area LR' "
                f"OpenCV's INTER_CUBIC/INTER_LINEAR/INTER_AREA. No validation image was trained on.")
    if task == "denoising":
        top = config.get("max_sigma", training.get("max_sigma", "?"))
        return (f"Removing additive white Gaussian noise of a known or estimated level (sigma 0-{top:g} on the "
                f"0-255 scale) from photos; the pipeline estimates sigma when it is not given.",
                f"Trained on clean photo patches ({sets}) with synthetic Gaussian noise, sigma uniform in [0, "
                f"{top:g}], clipped and quantised to 8 bits. Real camera noise (signal-dependent, spatially "
                f"correlated, demosaicked or JPEG-compressed) was not in training and is removed less well; "
                f"levels above {top:g} are outside what it learned.",
                "PSNR and SSIM on RGB over all 68 CBSD68 images, Gaussian noise with a fixed seed per image, "
                "clipped to [0, 255] and quantised to uint8 as in the literature's test scripts.")
    if task == "inpainting":
        return ("Filling holes in photos (object or scratch removal): mask 1 = hole, known pixels pass through "
                "unchanged.",
                f"Trained on photo crops ({sets}) with free-form brush strokes and boxes covering 10-40% of the "
                f"image, drawn at 256 px. Holes much larger than that, or over faces, text and regular structures, "
                f"come out blurry: the network continues local texture and has no generative prior.",
                "PSNR and SSIM over the whole image and inside the holes on 256x256 centre crops of BSD100, with "
                "fixed-seed masks (10-40% strokes and boxes); OpenCV Telea and Navier-Stokes on the same masks.")
    if task == "image-classification":
        labels = config.get("label_names") or []
        side = config.get("image_size", "?")
        return (f"Classifying small {config.get('color_mode', 'RGB')} images into {len(labels)} classes "
                f"({', '.join(labels)}); inputs are resized to {side}x{side}.",
                f"It knows only these {len(labels)} classes and always answers one of them (no reject option); "
                f"photos unlike the {side}x{side} training images are classified less reliably.",
                "Top-1 and top-5 accuracy on the dataset's official test split, never seen in training.")
    return ("Sampling small images of a chosen class (class-conditional), for demos and teaching.",
            f"Only the classes and the {config.get('image_size', '?')}x{config.get('image_size', '?')} resolution "
            f"of its training set, and a sample does not always look like the class asked for (see the class "
            f"agreement below); not for making data that must pass as real.",
            "Class agreement: a separately trained classifier labels generated samples (classes balanced) and "
            "we count how often it agrees with the requested class. FID is computed in that classifier's feature "
            "space against the test images, so it compares our generators with each other, not with Inception "
            "FIDs.")


CARD_KEYS = ("eval_results", "datasets", "training_config", "repo_id", "description", "license", "local_path",
             "sample")  # the keyword arguments of render_card, which read_card gives back


def render_card(config: dict[str, Any], *, eval_results: list[dict] | None = None, datasets: list[str] | None = None,
                training_config: dict | None = None, repo_id: str | None = None, description: str | None = None,
                license: str = "mit", local_path: str | None = None, sample: str | None = None) -> str:
    """The card's text. `repo_id`: the Hub repo the folder is pushed to (its usage snippet loads that), else
    `local_path` is shown (a relative folder, never an absolute path)."""
    name, task = config["model_name"], config["task"]
    results = [dict(r) for r in (eval_results or [])]
    index = [e for e in (_eval_result(r, task) for r in results) if e is not None]
    names = list(dict.fromkeys(datasets or []))
    hub_ids = list(dict.fromkeys(HUB_DATASETS[d] for d in names if d in HUB_DATASETS))
    data = ModelCardData(
        license=license, library_name="cnnimg-hub", pipeline_tag=TASKS[task].pipeline_tag,
        tags=["cnnimg-hub", "pytorch_model_hub_mixin", "safetensors", task, name], datasets=hub_ids or None,
        metrics=list(dict.fromkeys(r["metric_type"] for r in results)) or None,
        model_name=(repo_id or name) if index else None, eval_results=index or None)
    training = _no_abs_paths(training_config or {})
    local = _shown_path(local_path or f"weights/{name}")
    source = repo_id or local
    doc = (description or (model_class(name).__doc__ or "").strip().split("\n\n")[0]).strip()
    command = TASKS[task].key + {"inpaint": " photo.png --mask mask.png", "generate": " --class 0"}.get(
        TASKS[task].key, " photo.png")
    intended, limits, evaluated = _uses(config, training)
    lines = [f"# {repo_id or name}", "", f"`{name}` ({config.get('architecture')}) for **{task}**, "
             f"{config.get('num_parameters', 0):,} parameters, made with cnnimg-hub {config.get('library_version')}.",
             "", doc, ""]
    if sample:
        lines += [f"![before and after: {task}]({sample})", ""]
    lines += ["## Usage", "", "```python", "from cnnimg_hub import load_model", "",
              f'model = load_model("{source}")  # strict safetensors load, CPU float32', "```", "",
              "```bash", f"python -m cnnimg_hub {command} --model {source}", "```", ""]
    if not repo_id:
        lines += [f"This folder is not on the Hub yet: `python -m cnnimg_hub push {local} user/name` uploads it, "
                  f"and its card then loads `user/name`.", ""]
    lines += ["## Intended use", "", intended, "", "## Limitations", "", limits, "",
              "## Evaluation", "", evaluated, ""]
    if results:
        lines += [EVAL_HEADER, "|---|---|---|---|---|"]
        lines += [f"| {r['dataset_name']} | {r.get('dataset_split') or ''} | {r.get('metric_name') or r['metric_type']} "
                  f"| {r['metric_type']} | {r['metric_value']} |" for r in results]
        lines += [""]
    else:
        lines += ["No evaluation results were recorded for these weights.", ""]
    if names:
        lines += ["## Training data", ""]
        lines += [f"- {d}" + (f" (on the Hub: [{HUB_DATASETS[d]}](https://huggingface.co/datasets/"
                              f"{HUB_DATASETS[d]}))" if d in HUB_DATASETS else "") for d in names]
        lines += [""]
    lines += ["## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
    if training.get("lineage"):
        lines += _lineage_lines(training["lineage"])
    if training:
        lines += ["## Training", "", "```json", json.dumps(training, indent=2, sort_keys=True), "```", ""]
    text = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)
    return text + f"\n<!-- written by cnnimg-hub (digest {_digest(text)}); a push keeps this card once it is " \
                  f"edited on the Hub, unless --overwrite-card -->\n"


# ----------------------------------------------------------------------------------------------- reading
def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_unedited(text: str) -> bool:
    """True when `text` is a card this module wrote and nobody changed since (its digest still matches)."""
    m = MARK.search(text)
    return bool(m) and _digest(text[:m.start()]) == m.group(1)


def _section(body: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\n<!-- written by|\Z)", body, re.M | re.S)
    return m.group(1) if m else ""


def read_card(text: str) -> dict[str, Any]:
    """The `render_card` keyword arguments a card was written from (this layout or the older one, whose results
    and dataset names were all in the front matter)."""
    card = ModelCard(text, ignore_metadata_errors=True)
    body, meta = card.text, card.data
    out: dict[str, Any] = {"license": meta.license or "mit"}
    title = re.search(r"^# (\S+)", body, re.M)
    if title and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", title.group(1)):
        out["repo_id"] = title.group(1)
    paragraphs = body.split("## ")[0].strip().split("\n\n")
    described = [p.strip() for p in paragraphs[2:] if not p.strip().startswith("![")]
    if described:
        out["description"] = "\n\n".join(described)
    if re.search(r"!\[[^\]]*\]\(" + re.escape(SAMPLE) + r"\)", body):
        out["sample"] = SAMPLE
    evaluation = _section(body, "Evaluation")
    if EVAL_HEADER in evaluation:
        rows = [line.strip("| ").split(" | ") for line in evaluation.split(EVAL_HEADER, 1)[1].splitlines()[2:]
                if line.startswith("| ")]
        out["eval_results"] = [{"dataset_name": d, "dataset_split": s or None, "metric_name": n, "metric_type": t,
                                "metric_value": json.loads(v)} for d, s, n, t, v in rows]
    else:
        out["eval_results"] = [{"dataset_name": e.dataset_name, "dataset_split": e.dataset_split,
                                "metric_name": e.metric_name, "metric_type": e.metric_type,
                                "metric_value": e.metric_value} for e in (meta.eval_results or [])]
    listed = [line[2:].split(" (on the Hub:")[0] for line in _section(body, "Training data").splitlines()
              if line.startswith("- ")]
    out["datasets"] = listed or list(meta.datasets or [])
    training = re.search(r"^## Training\n+```json\n(.*?)\n```", body, re.M | re.S)
    if training:
        out["training_config"] = json.loads(training.group(1))
    return out


# ----------------------------------------------------------------------------------------------- sample image
def _panel(image: Image.Image, label: str, side: int) -> Image.Image:
    """`image` enlarged (nearest) to `side` px wide, with `label` under it."""
    image = image.convert("RGB").resize((side, round(image.height * side / image.width)), Image.NEAREST)
    out = Image.new("RGB", (side, image.height + 16), "white")
    out.paste(image, (0, 0))
    ImageDraw.Draw(out).text((4, image.height + 2), label, fill="black")
    return out


@torch.inference_mode()
def sample_image(model: nn.Module, photo: Path | None = None, side: int = 192) -> Image.Image | None:
    """A before/after strip for a restoration model (degraded input, the model's output, the original), made from
    a photo in examples/ that no model trained or was validated on; None for other tasks or without the photo."""
    task = model.task
    photo = photo or EXAMPLES / {"super-resolution": "chelsea.jpg", "denoising": "astronaut.jpg"}.get(task, "coffee.jpg")
    if not TASKS[task].restores or not Path(photo).is_file():
        return None
    clean = Image.open(photo).convert("RGB" if getattr(model, "in_channels", 3) == 3 else "L")
    left, top = (clean.width - side) // 2, (clean.height - side) // 2
    clean = clean.crop((left, top, left + side, top + side))
    model = copy.deepcopy(model).eval().float().cpu()  # the caller's model keeps its device and mode
    if task == "super-resolution":
        s = model.scale
        low = clean.resize((side // s, side // s), Image.BICUBIC)
        panels = [(low, f"input (1/{s}, PIL bicubic)"), (low.resize(clean.size, Image.BICUBIC), "bicubic"),
                  (to_image(model(to_tensor(low))), "this model")]
    elif task == "denoising":
        noisy = add_noise(clean, 25, seed=0)
        panels = [(noisy, "input (sigma 25)"), (to_image(model(to_tensor(noisy), 25.0)), "this model")]
    else:
        mask = random_mask(side, side, random.Random(0))
        holed = np.asarray(clean).copy()
        holed[mask > 0] = 255
        out = model(to_tensor(clean), torch.from_numpy(mask)[None, None])
        panels = [(Image.fromarray(holed), "input (holes white)"), (to_image(out), "this model")]
    strips = [_panel(im, label, side) for im, label in panels + [(clean, "original")]]
    strip = Image.new("RGB", (sum(p.width for p in strips) + 4 * (len(strips) - 1), strips[0].height), "white")
    for i, p in enumerate(strips):
        strip.paste(p, (i * (side + 4), 0))
    return strip


def write_sample(model: nn.Module, folder: Path) -> str | None:
    """Write SAMPLE into `folder` (JPEG, well under 150 KB); its file name, or None when the task has none."""
    strip = sample_image(model)
    if strip is None:
        return None
    strip.save(Path(folder) / SAMPLE, "JPEG", quality=85, optimize=True)
    return SAMPLE
