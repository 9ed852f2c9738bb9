"""What every tab of the app shares: limits, the model store, the widgets that read uploads and send results,
the two voices of errors (a sentence for the web user, one log line for the server), and ZeroGPU.

No task rule lives here or in the tabs: what a tab shows is computed by `cnnimg_hub.pipelines` and
`cnnimg_hub.compare`.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import re
import threading
import types
import uuid
from pathlib import Path
from typing import Any, Callable, Hashable

import gradio as gr
import torch
from gradio.utils import get_upload_folder
from PIL import Image

import cnnimg_hub
from cnnimg_hub import imageio, runtime
from cnnimg_hub._files import atomic_write
from cnnimg_hub._hub import REPO_ID
from cnnimg_hub.errors import CnnImgError
from cnnimg_hub.spec import InferenceSpec
from cnnimg_hub.tasks import TASKS

# -------------------------------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in imageio.IMAGE_SUFFIXES)
MAX_FILE_SIZE = "20mb"  # uploads over this are refused by Gradio itself, before any handler runs
MAX_BYTES = 20 * 1024 * 1024  # the same limit for open_image (API callers, examples)
MAX_PIXELS = 4_000_000  # largest input (width x height) any tab accepts
MODEL_CACHE_SIZE = 8  # loaded models kept in memory, keyed by (source, revision, task, device)
# Model runs share one queue with two slots per core: a big image's run uses every core for its convolutions
# (two such runs share them, no faster in total), but small requests spend most of their time in Python (decoding,
# Gradio, holding the GIL), which the other slots overlap. Load test on 2 cores (16 HTTP clients, 48 px, 30 s):
# 14.9-16.1 requests/s with 2 * CORES = 4 slots (and the signature cache below) against 13.8-14.2 with 2.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
MODEL_SLOT = dict(concurrency_id="model", concurrency_limit=2 * CORES)
# Classify and generate take many requests at once: each prepares its input in its own worker and `BATCHER` runs
# the waiting ones of the same model in one model call (at most MAX_BATCH), so these workers hardly use the CPU.
MAX_BATCH = 16
BATCHED_SLOT = dict(concurrency_id="batched", concurrency_limit=MAX_BATCH)
# Classical methods run on the CPU beside the model, never in its slot; BM3D (up to a minute) has its own queue.
BASELINE_SLOT = dict(concurrency_id="baselines", concurrency_limit=2)
BM3D_SLOT = dict(concurrency_id="bm3d", concurrency_limit=1)
UI_ONLY = dict(api_visibility="private", queue=False)
log = logging.getLogger("cnnimg_hub.app")


# -------------------------------------------------------------------------------------------------- errors
# Library messages speak to a programmer (argument names, local folders); a web user gets these sentences instead.
_WEB_WORDS = [
    (r"^(.*) is (\d+)x(\d+) = [\d,]+ pixels, over the [\d,]+ pixel limit.*$",
     lambda m: f"{m[1]} is {m[2]}x{m[3]} pixels, over this demo's {MAX_PIXELS / 1e6:g} megapixel limit: shrink it, "
               f"or run the command line (python -m cnnimg_hub) on big images."),
    (r"^(.*) (is larger than|is [\d,]+ bytes, over the) .*max_bytes.*$",
     lambda m: f"{m[1]} is over this demo's {MAX_BYTES // 2 ** 20} MB limit: save it smaller (JPEG or WebP) and "
               f"upload it again."),
    (r"^sigma must be between 0 and ([\d.]+) .*$",
     lambda m: f"This model removes noise up to sigma {m[1]}: lower the noise level, or tick Auto."),
    (r"connect once to download it, or pass a local folder", lambda m: "try again later, or choose a shipped model"),
    (r"log in with `hf auth login` or set HF_TOKEN", lambda m: "this demo loads public repos only"),
    (r", or pass a local folder", lambda m: ""),
]


def web_message(text: str) -> str:
    """A library error message as a sentence a web user can act on."""
    for pattern, words in _WEB_WORDS:
        text = re.sub(pattern, words, text, flags=re.S)
    if not any(c in text.split(" ", 1)[0] for c in "./_'\""):  # not a file name or quoted value
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def refuse(message: str) -> gr.Error:
    """A gr.Error for an expected user error: shown to the user, logged as one line, no traceback."""
    log.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def user_errors(fn):
    """Turn every deliberate refusal (CnnImgError: bad upload, wrong task, missing repo, Hub down) and running out
    of memory into `refuse`, so the user reads what to do and the log gets one line, not a stack trace."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CnnImgError as e:
            raise refuse(web_message(str(e))) from None
        except torch.OutOfMemoryError:
            raise refuse("The server ran out of memory on this image: try a smaller one.") from None
    return wrapper


def gpu(fn):
    """`spaces.GPU(fn)` where the `spaces` package is importable (a Hugging Face ZeroGPU Space lends a GPU for
    the call; elsewhere it is a no-op), else `fn` itself."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def handler(fn):
    """The decorators of a model handler: ZeroGPU outside, user errors inside."""
    return gpu(user_errors(fn))


# -------------------------------------------------------------------------------------------------- models
@functools.lru_cache(maxsize=MODEL_CACHE_SIZE)
def load_cached(source: str, revision: str | None, task: str, device: str, compile: bool = False) -> torch.nn.Module:
    """One load per (source, revision, task, device, compile); failures are not cached, so a retry tries again.
    With `compile`, torch.compile: the first request of each image size waits seconds, later ones run faster."""
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
        if isinstance(config, dict) and config.get("task") in TASKS:
            found[config_path.parent.name] = config
    return found


class ModelStore:
    """The shipped models of one weights folder plus Hub loading; hands out cached, ready-to-run models."""

    def __init__(self, weights_dir: Path, device: str | None = None, compile: bool = False,
                 precision: str | None = None):
        self.weights_dir = Path(weights_dir)
        self.device_preference = None if device in (None, "", "auto") else device
        self.compile = compile
        self.precision = (precision or "auto").lower()  # "auto": per model and CPU (see runtime.compute_dtype)
        runtime.compute_dtype(self.precision, torch.device("cpu"))  # refuse an unknown one at start-up
        self.shipped = scan_weights(self.weights_dir)
        self._device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        if self._device is None:  # resolved on first use, not at import
            self._device = runtime.select_device(self.device_preference)
        return self._device

    def spec(self, name: str) -> InferenceSpec:
        return InferenceSpec.from_config(self.shipped[name])

    def names(self, task: str, **match) -> list[str]:
        """Shipped models of `task` whose config has the values in `match` (e.g. scale=4)."""
        return [n for n, c in self.shipped.items()
                if c["task"] == task and all(c.get(k) == v for k, v in match.items())]

    def choices(self, task: str, **match) -> list[tuple[str, str]]:
        return [(f"{n} ({self.shipped[n]['architecture']})", n) for n in self.names(task, **match)]

    def get(self, task: str, name: str | None, repo: str | None = None) -> torch.nn.Module:
        """The Hub repo when `repo` is filled in (``user/name`` or ``user/name@revision``), else shipped `name`."""
        repo = (repo or "").strip()
        if repo:
            source, _, revision = repo.partition("@")
            source = source.strip()
            # Only Hub ids here: a public demo must not load (or reveal the existence of) server folders.
            if not REPO_ID.match(source) or ".." in source or Path(source).is_absolute():
                raise refuse(f"{source!r} is not a Hub repo id like 'user/name' (or 'user/name@revision'): "
                             f"correct it, or clear the box to use the dropdown.")
            return load_cached(source, revision.strip() or None, task, str(self.device), self.compile)
        if not name:
            raise refuse("No model is chosen: pick one in the dropdown, or enter a Hub repo id (user/name).")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name not in self.names(task):
            raise refuse(f"{name!r} is not a model folder of this demo; choose one of: "
                         f"{', '.join(self.names(task)) or 'none (enter a Hub repo id)'}.")
        return load_cached(str(self.weights_dir / name), None, task, str(self.device), self.compile)


class MicroBatcher:
    """Concurrent requests for one model, run in as few model calls as possible.

    `batcher(key, run, item)` returns `run([item, ...])`'s result for `item`. Whoever finds no batch running runs
    every request waiting under the same `key` (the model and its settings), up to `max_batch`, its own
    included; requests that arrive meanwhile wait for the next call. A lone request runs at once, alone: nothing
    waits for others to arrive. When a batch fails, each of its requests runs alone, so a bad request only fails
    itself.
    """

    def __init__(self, max_batch: int = MAX_BATCH):
        self.max_batch = max_batch
        self._waiting: list[dict] = []
        self._lock = threading.Lock()  # guards _waiting
        self._running = threading.Lock()  # one model call at a time
        self.calls = 0  # model calls made (for tests)

    def __call__(self, key: Hashable, run: Callable[[list], list], item: Any) -> Any:
        job = {"key": key, "run": run, "item": item, "done": threading.Event()}
        with self._lock:
            self._waiting.append(job)
        while not job["done"].is_set():
            with self._running:
                if job["done"].is_set():
                    break
                with self._lock:
                    batch = [j for j in self._waiting if j["key"] == key][:self.max_batch]
                    self._waiting = [j for j in self._waiting if not any(j is b for b in batch)]
                self._run(batch)
        if "error" in job:
            raise job["error"]
        return job["result"]

    def _run(self, batch: list[dict]) -> None:
        try:
            self.calls += 1
            for job, result in zip(batch, batch[0]["run"]([j["item"] for j in batch]), strict=True):
                job["result"] = result
        except Exception as e:
            if len(batch) == 1:
                batch[0]["error"] = e
            else:
                for job in batch:
                    self._run([job])
        finally:
            for job in batch:
                job["done"].set()


BATCHER = MicroBatcher()


def model_picker(store: ModelStore, task: str, **match) -> tuple[gr.Dropdown, gr.Textbox]:
    """A dropdown of the shipped models of `task` and a Hub repo box."""
    choices = store.choices(task, **match)
    dropdown = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model",
                           allow_custom_value=bool(match),
                           info=None if choices else "No shipped model for this task: enter a Hub repo.")
    repo = gr.Textbox(label="or a Hub repo (user/name or user/name@revision)", placeholder="user/name",
                      info="When filled in, it is used instead of the dropdown.")
    return dropdown, repo


# -------------------------------------------------------------------------------------------------- inputs
def open_upload(src, what: str = "an image") -> Image.Image:
    """An upload (path, or PIL from the editor) -> PIL image (L, LA, RGB or RGBA: transparency kept)."""
    if src is None:
        raise refuse(f"Upload {what} first.")
    try:
        return imageio.open_image(src, max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)
    except CnnImgError as e:  # name the upload by its file name, not by the server's temp path
        message = str(e).replace(str(src), Path(src).name) if isinstance(src, (str, Path)) else str(e)
        raise refuse(web_message(message)) from None


def image_input(**kwargs) -> gr.Image:
    """A gr.Image whose handler gets the uploaded file's path (or None), not yet decoded, so `open_upload` does
    the decoding and its limits and messages apply (Gradio's own decoding fails with a bare "Error")."""
    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    decode = component.preprocess

    def preprocess(payload):
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return decode(payload)
        return payload.path

    component.preprocess = preprocess
    return component


# -------------------------------------------------------------------------------------------------- outputs
def png_file(image: Image.Image, prefix: str = "image-") -> str:
    """`image` as a PNG file in Gradio's cache folder, encoded once per image object (imageio.encode_png: a
    2048x2048 result in 0.05 s instead of 0.8 s for Gradio's own encoding). Gradio serves it without a copy and
    its `delete_cache` removes it; the path is remembered on the image, so slider and download share it."""
    path = getattr(image, "_cnnimg_png", None)
    if path and Path(path).is_file():
        return path
    path = str(atomic_write(Path(get_upload_folder()) / "cnnimg" / f"{prefix}{uuid.uuid4().hex}.png",
                            imageio.encode_png(image)))
    image._cnnimg_png = path
    return path


def fast_png(component):
    """`component` (an output Image, ImageSlider or Gallery) sending its PIL values as `png_file`s."""
    encode = component.postprocess

    def png(v):
        if isinstance(v, Image.Image):
            return png_file(v)
        return type(v)(png(x) for x in v) if isinstance(v, (tuple, list)) else v  # slider pair, gallery items

    component.postprocess = lambda value: encode(png(value))
    return component


def result_image(label: str, **kwargs) -> gr.Image:
    """A read-only output image with download and full-screen buttons, sent as a fast PNG."""
    return fast_png(gr.Image(label=label, format="png", type="pil", interactive=False,
                             buttons=["download", "fullscreen"], **kwargs))


def slider(label: str, **kwargs) -> gr.ImageSlider:
    """A before/after slider (two images of one size) with download and full-screen buttons."""
    return fast_png(gr.ImageSlider(label=label, format="png", type="pil", buttons=["download", "fullscreen"],
                                   max_height=600, **kwargs))


def examples(inputs, label: str = "Examples", **kwargs) -> None:
    """The photos in examples/ for `inputs` (one image input, or a list whose first is the image)."""
    if EXAMPLES:
        many = isinstance(inputs, list)
        gr.Examples([[p] + [c.value for c in inputs[1:]] if many else [p] for p in EXAMPLES], inputs=inputs,
                    label=label, **kwargs)


# ------------------------------------------------------------------------------------ Gradio's per-session cost
class _CachedSignatures(types.ModuleType):
    """`inspect` with `signature(fn)` remembered per function (other calls and names go to `inspect` itself)."""

    def __init__(self):
        super().__init__("inspect")
        self._cached = functools.lru_cache(maxsize=4096)(inspect.signature)

    def signature(self, fn, *args, **kwargs):
        if args or kwargs:
            return inspect.signature(fn, *args, **kwargs)
        try:
            return self._cached(fn)
        except TypeError:  # an unhashable callable: not cached (inspect's own TypeErrors are raised again here)
            return inspect.signature(fn)

    def __getattr__(self, name: str):
        return getattr(inspect, name)


def cache_block_signatures() -> None:
    """Make Gradio's per-session setup cheaper, without changing what it builds.

    Gradio builds the config of every block of the app for each new session (`SessionState.__init__`), and each
    REST call to /gradio_api/call/<name> is a new session. `Block.get_config` calls
    `inspect.signature(cls.__init__)` for each of the app's ~110 blocks every time: under the load test that was
    16% of the time the server held the GIL, which bounds its requests/s (py-spy --gil). Signatures of functions
    do not change while the app runs, so `gradio.blocks` gets an `inspect` whose `signature` is cached. Idempotent.
    """
    import gradio.blocks  # noqa: PLC0415

    if not isinstance(gradio.blocks.inspect, _CachedSignatures):
        gradio.blocks.inspect = _CachedSignatures()
