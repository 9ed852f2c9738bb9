"""Everything that reads or writes a model folder or talks to the Hub. The one module that imports the client.

A model folder is exactly ``config.json`` + ``model.safetensors`` + ``README.md``. The config holds the
constructor arguments (that is the config) plus what a consumer needs to run the model (task, inference
settings) under the keys in `META_KEYS`. Loading is strict: safetensors only, every key and shape must match.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx2
import torch
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants, snapshot_download
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                    RepositoryNotFoundError, RevisionNotFoundError)
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from . import __version__
from ._registry import _MODELS, create_model, init_parameters, list_models, model_class
from .errors import HubError, ModelLoadError, ModelNotFoundError, WrongTaskError

FILES = ("config.json", "model.safetensors", "README.md")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_CONFIG_BYTES = 256 * 1024
# Seconds one Hub request may stay unanswered before the cached copy (or a HubError) is used instead.
HUB_TIMEOUT = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# Config keys that are not constructor arguments: written by `build_config`, checked or ignored on load.
META_KEYS = {"model_name", "architecture", "task", "library", "library_version", "num_parameters",
             "input_size", "input_range", "output_range", "output_size", "color_mode", "interpolation", "crop",
             "output", "latent_dim", "kind", "min_size", "multiple_of", "tile_size", "tile_overlap",
             "mask_convention", "noise", "sigma_scale", "max_sigma"}
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")
TASK_TAGS = {"image-classification": "image-classification", "image-generation": "unconditional-image-generation",
             "super-resolution": "image-to-image", "inpainting": "image-to-image", "denoising": "image-to-image"}


# ----------------------------------------------------------------------------------------------- writing
def model_name_of(model: nn.Module) -> str:
    """The registered name of `model` (set by create_model), else the first name registered for its class."""
    name = getattr(model, "model_name", None)
    if name:
        return name
    for n, (cls, _) in _MODELS.items():
        if cls is type(model):
            return n
    raise ModelLoadError(f"{type(model).__name__} is not a registered model class")


def build_config(model: nn.Module) -> dict[str, Any]:
    """Constructor arguments (from the mixin) + task and inference settings + provenance."""
    args = dict(model._hub_mixin_config or {})
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}
    meta = {"model_name": model_name_of(model), "architecture": type(model).__name__, "task": model.task,
            "library": "cnnimg-hub", "library_version": __version__,
            "num_parameters": sum(p.numel() for p in model.parameters()), **model.inference_config()}
    assert not set(meta) - META_KEYS, set(meta) - META_KEYS
    return {**args, **meta}


def _atomic_write(path: Path, write) -> None:
    """Write through a temp file in the same folder, then rename: a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_weights(model: nn.Module, path: Path) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _atomic_write(Path(path), lambda tmp: save_file(state, tmp, metadata={"format": "pt",
                                                                          "model_name": model_name_of(model)}))


def write_config(model: nn.Module, path: Path) -> None:
    text = json.dumps(build_config(model), indent=2, sort_keys=True) + "\n"
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def _eval_result(r: EvalResult | dict, task: str) -> EvalResult:
    if isinstance(r, EvalResult):
        return r
    r = dict(r)
    r.setdefault("task_type", TASK_TAGS.get(task, task))
    r.setdefault("dataset_type", r["dataset_name"].lower().replace(" ", "-"))
    return EvalResult(**r)


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


def model_card(model: nn.Module, *, eval_results: list[EvalResult | dict] | None = None,
               datasets: list[str] | None = None, training_config: dict | None = None, repo_id: str | None = None,
               description: str | None = None, license: str = "mit", **_: Any) -> ModelCard:
    """The README.md of a model folder: metadata (license, tags, datasets, model-index) and a usage section."""
    name = model_name_of(model)
    config = build_config(model)
    results = [_eval_result(r, model.task) for r in (eval_results or [])]
    data = ModelCardData(
        license=license, library_name="cnnimg-hub", pipeline_tag=TASK_TAGS.get(model.task),
        tags=["cnnimg-hub", "pytorch_model_hub_mixin", "safetensors", model.task, name],
        datasets=datasets or None, model_name=repo_id or name if results else None,
        eval_results=results or None,
    )
    source = repo_id or "path/to/this/folder"
    doc = (description or (type(model).__doc__ or "").strip().split("\n\n")[0]).strip()
    lines = [f"# {repo_id or name}", "", f"`{name}` ({type(model).__name__}) for **{model.task}**, "
             f"{config['num_parameters']:,} parameters, made with cnnimg-hub {__version__}.", "", doc, "",
             "## Usage", "", "```python", "from cnnimg_hub import load_model", "",
             f'model = load_model("{source}")  # strict safetensors load, CPU float32', "```", "",
             "Or in the command line / app: `python -m cnnimg_hub --help`, `python app.py`.", ""]
    if results:
        lines += ["## Evaluation", "", "| dataset | metric | value |", "|---|---|---|"]
        lines += [f"| {r.dataset_name} | {r.metric_name or r.metric_type} | {r.metric_value} |" for r in results]
        lines += [""]
    else:
        lines += ["## Evaluation", "", "No evaluation results were recorded for these weights.", ""]
    if datasets:
        lines += ["## Training data", "", ", ".join(datasets), ""]
    lines += ["## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
    if training_config and training_config.get("lineage"):
        lines += _lineage_lines(training_config["lineage"])
    if training_config:
        lines += ["## Training", "", "```json", json.dumps(training_config, indent=2, sort_keys=True), "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def save_model(model: nn.Module, folder: str | Path, **card_kwargs: Any) -> Path:
    """Write `folder` with exactly config.json, model.safetensors and README.md.

    `card_kwargs` go to `model_card`: eval_results (list of dicts with dataset_name, metric_type, metric_value,
    optional metric_name, dataset_split, ...), datasets, training_config, repo_id, description, license.
    """
    folder = Path(folder)
    model.save_pretrained(folder, model_card_kwargs=card_kwargs)
    return folder


# ----------------------------------------------------------------------------------------------- reading
def _hub_error(e: Exception, repo_id: str, revision: str | None) -> Exception:
    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    if isinstance(e, RevisionNotFoundError):
        return ModelNotFoundError(f"revision {revision!r} does not exist in Hub repo {repo_id!r}")
    if isinstance(e, (RepositoryNotFoundError, GatedRepoError)):
        return ModelNotFoundError(f"Hub repo {repo_id!r} was not found (or is private: log in with "
                                  f"`hf auth login` or set HF_TOKEN)")
    if isinstance(e, LocalEntryNotFoundError):  # (a subclass of EntryNotFoundError: test it first)
        return ModelNotFoundError(f"{where} is not in the local Hugging Face cache and the Hub cannot be reached "
                                  f"(offline, HF_HUB_OFFLINE=1 or the Hub is down); connect once to download it, "
                                  f"or pass a local folder")
    if isinstance(e, EntryNotFoundError):
        return ModelLoadError(f"Hub repo {where} has no {FILES[0]}/{FILES[1]}: it is not a cnnimg-hub model")
    return HubError(f"the Hub failed while fetching {where}: {e}. Try again later; a copy in the local cache "
                    f"is used when one exists")


def resolve_folder(source: str | Path, revision: str | None = None, *, cache_dir: str | Path | None = None,
                   token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """A local folder as is; a Hub repo id ("user/name", "user/name@rev") downloaded (or taken from the cache)."""
    text = str(source)
    if Path(text).is_dir():
        return Path(text)
    if "@" in text and revision is None:
        text, revision = text.split("@", 1)
    if not REPO_ID.match(text) or ".." in text:
        raise ModelNotFoundError(f"{str(source)!r} is neither an existing folder nor a Hub repo id like 'user/name'")
    if revision is not None and (not REVISION.match(revision) or ".." in revision):
        raise ModelNotFoundError(f"{revision!r} is not a valid revision (a branch, tag or commit sha)")
    commit, unreachable = None, None
    try:
        if not (local_files_only or constants.HF_HUB_OFFLINE or COMMIT_SHA.match(revision or "")):
            # snapshot_download asks for the commit with no timeout, so a stalled Hub would hang us for as long as
            # it stalls: ask first, bounded, then download that commit (and fall back to the cache when unanswered).
            try:
                commit = HfApi(token=token).repo_info(text, revision=revision, timeout=HUB_TIMEOUT).sha
            except (httpx2.TimeoutException, httpx2.NetworkError) as e:
                unreachable = e
            except HfHubHTTPError as e:
                if e.response is not None and e.response.status_code < 500:
                    raise
                unreachable = e  # the Hub is down: the cache may have it
        path = snapshot_download(text, revision=commit or revision, cache_dir=cache_dir, token=token,
                                 local_files_only=local_files_only or unreachable is not None,
                                 allow_patterns=list(FILES) + ["*.bin", "*.pt"], etag_timeout=HUB_TIMEOUT)
    except LocalEntryNotFoundError as e:
        if isinstance(unreachable, httpx2.TimeoutException):
            raise HubError(f"the Hub did not answer within {HUB_TIMEOUT:g} s while fetching {text}"
                           f"{'@' + revision if revision else ''}, and no copy is in the local cache; try again "
                           f"later, or pass a local folder") from unreachable
        raise _hub_error(e, text, revision) from e
    except (HfHubHTTPError, EntryNotFoundError, OSError, ValueError) as e:  # map the client's errors, keep the cause
        raise _hub_error(e, text, revision) from e
    if commit is not None and commit != revision:
        # Downloading by commit sha records no branch -> commit ref; write it, so offline loads of the branch work.
        ref = Path(path).parent.parent / "refs" / (revision or "main")
        try:
            if not ref.is_file() or ref.read_text() != commit:
                _atomic_write(ref, lambda tmp: Path(tmp).write_text(commit))
        except OSError:
            pass  # a read-only cache: the download itself worked
    return Path(path)


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: a cnnimg-hub model folder has config.json, model.safetensors "
                             f"and README.md (write one with save_model)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelLoadError(f"{path} is {path.stat().st_size} bytes, over the {MAX_CONFIG_BYTES} byte limit")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or "model_name" not in config:
        raise ModelLoadError(f"{path} has no 'model_name': it was not written by cnnimg-hub")
    return config


def model_from_config(config: dict[str, Any], where: str = "config.json") -> nn.Module:
    """Build the (untrained) model a config describes; unknown keys are an error, not silently dropped."""
    name = config["model_name"]
    try:
        cls = model_class(name)
    except KeyError:
        raise ModelLoadError(f"{where}: unknown model_name {name!r}; this cnnimg-hub knows {list_models()}") from None
    params = set(init_parameters(cls))
    unknown = set(config) - params - META_KEYS
    if unknown:
        raise ModelLoadError(f"{where}: unknown key(s) {sorted(unknown)} for {cls.__name__}; the folder may come "
                             f"from a newer cnnimg-hub (installed: {__version__})")
    try:
        return create_model(name, **{k: v for k, v in config.items() if k in params})
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{where}: invalid arguments for {name}: {e}") from e


def load_weights(model: nn.Module, path: Path) -> None:
    """Strictly load safetensors into `model`: every key present, none extra, every shape equal."""
    if not path.is_file():
        pickles = sorted(p.name for p in path.parent.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f" (found {pickles}: pickle files are never loaded, convert them to safetensors)" if pickles else ""
        raise ModelLoadError(f"{path} is missing{hint}")
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
            if missing or unexpected:
                raise ModelLoadError(f"{path} does not match its config.json: missing keys {missing[:5]}, "
                                     f"unexpected keys {unexpected[:5]}")
            state = {}
            for k in expected:
                t = f.get_tensor(k)
                if t.shape != expected[k].shape:
                    raise ModelLoadError(f"{path}: tensor {k!r} has shape {tuple(t.shape)} but config.json implies "
                                         f"{tuple(expected[k].shape)}; the weights and config disagree")
                state[k] = t
    except SafetensorError as e:
        raise ModelLoadError(f"{path} is not a valid safetensors file ({e})") from e
    except OSError as e:
        raise ModelLoadError(f"{path} could not be read ({e})") from e
    model.load_state_dict(state, strict=True)


def load_model(source: str | Path, revision: str | None = None, *, task: str | None = None,
               device: str | torch.device = "cpu", cache_dir: str | Path | None = None,
               token: str | bool | None = None, local_files_only: bool = False) -> nn.Module:
    """Load a model from a local folder or a Hub repo id ("user/name", optionally "@revision" or `revision`).

    Raises ModelNotFoundError, ModelLoadError (bad folder, config or weights), WrongTaskError (when `task` is
    given and differs) or HubError. The model comes back in eval mode on `device`, with `.config` (dict) and
    `.source` (str) set.
    """
    folder = resolve_folder(source, revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    config = read_config(folder)
    if task is not None and config.get("task") != task:
        raise WrongTaskError(f"{source} is a {config.get('task')!r} model ({config['model_name']}), not {task!r}")
    model = model_from_config(config, str(folder / "config.json"))
    load_weights(model, folder / "model.safetensors")
    model.config, model.source = config, str(source)
    return model.eval().to(device)


# ----------------------------------------------------------------------------------------------- pushing
def push_to_hub(folder: str | Path, repo_id: str, *, revision: str | None = None, token: str | bool | None = None,
                private: bool = False, commit_message: str | None = None) -> str:
    """Upload a model folder (checked to load first) to `repo_id` in one commit; returns the commit sha.

    `revision` is the branch to commit to (created from main if new). The token comes from the argument, HF_TOKEN
    or the huggingface_hub login, and is never printed or written anywhere.
    """
    folder = Path(folder)
    load_model(folder)  # refuse to publish something that does not load
    if not REPO_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a Hub repo id like 'user/name'")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(folder_path=folder, repo_id=repo_id, revision=revision, allow_patterns=list(FILES),
                                 commit_message=commit_message or f"Upload {folder.name} with cnnimg-hub")
    except HfHubHTTPError as e:
        raise HubError(f"pushing {folder} to {repo_id} failed: {e}") from e
    return info.oid
