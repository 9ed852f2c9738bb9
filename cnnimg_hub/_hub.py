"""Everything that reads a model folder or talks to the Hub. The one module that imports the Hub client.

What a folder holds (``config.json`` + ``model.safetensors`` + ``README.md``) and how it is written is `_folder`'s;
this module loads folders strictly (safetensors only, every key and shape must match, no unknown config key),
resolves Hub repo ids through the cache, and pushes folders.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import torch
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, constants, get_session, hf_hub_download, \
    snapshot_download
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                    RepositoryNotFoundError, RevisionNotFoundError)
from safetensors import SafetensorError, safe_open
from torch import nn

from . import __version__
from ._card import SAMPLE, is_unedited, read_card, render_card, write_sample
from ._files import atomic_write
from ._folder import FILES, META_KEYS, TASK_TAGS, build_config, model_card, model_name_of  # noqa: F401  (re-exported)
from ._folder import restamp_weights, weights_metadata
from ._registry import create_model, init_parameters, list_models, model_class
from .errors import HubError, ModelLoadError, ModelNotFoundError, WrongTaskError
from .spec import InferenceSpec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_CONFIG_BYTES = 256 * 1024
# Seconds one Hub request of a download may stay unanswered before the cached copy (or a HubError) is used instead.
HUB_TIMEOUT = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
# Seconds one request of a push (create repo, upload, commit) may wait for the Hub.
PUSH_TIMEOUT = float(os.environ.get("CNNIMG_HUB_PUSH_TIMEOUT") or 60)
CLIENT = {"library_name": "cnnimg-hub", "library_version": __version__}  # in the user agent of every Hub request
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- bounded requests
# huggingface_hub's shared HTTP client has no default timeout and most of its calls set none, so a Hub that stops
# answering would hang a push or a download for as long as it stalls. While one of our Hub calls runs, a request
# hook caps every request of the client (from any thread: the download workers too) at that call's timeout, per
# connect, read, write and pool wait. Nothing changes for the client outside our calls.
_LIMITS: list[float] = []
_LIMITS_LOCK = threading.Lock()


def _cap_timeout(request: httpx2.Request) -> None:
    with _LIMITS_LOCK:
        limit = max(_LIMITS, default=None)
    if limit is not None:
        old = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: limit if old.get(k) is None else min(old[k], limit)
                                         for k in ("connect", "read", "write", "pool")}


@contextmanager
def _bounded(seconds: float):
    """Every request of the Hub client inside this block waits at most `seconds` for each step."""
    hooks = get_session().event_hooks["request"]
    if _cap_timeout not in hooks:  # checked each time: the client makes a new session after a fork
        hooks.append(_cap_timeout)
    with _LIMITS_LOCK:
        _LIMITS.append(seconds)
    try:
        yield
    finally:
        with _LIMITS_LOCK:
            _LIMITS.remove(seconds)


# ----------------------------------------------------------------------------------------------- writing
def save_model(model: nn.Module, folder: str | Path, *, sample_image: bool = False, **card_kwargs: Any) -> Path:
    """Write `folder` with exactly config.json, model.safetensors and README.md (and, with `sample_image`, the
    before/after picture of a restoration model, sample.jpg, embedded in the card).

    `card_kwargs` go to `_card.render_card`: eval_results (list of dicts with dataset_name, metric_type,
    metric_value, optional metric_name, dataset_split), datasets (names; Hub ids are looked up), training_config,
    repo_id, description, license.
    """
    folder = Path(folder)
    if sample_image:
        folder.mkdir(parents=True, exist_ok=True)
        card_kwargs["sample"] = write_sample(model, folder)
    card_kwargs.setdefault("local_path", folder.as_posix())
    model.save_pretrained(folder, model_card_kwargs=card_kwargs)
    return folder


def refresh_card(folder: str | Path, *, repo_id: str | None = None) -> Path:
    """Write `folder`'s README.md again from its config.json and what its card records (results, training data,
    training config), the sample image of a restoration model, and the safetensors header's metadata. The
    tensors are not touched (their bytes stay identical); config.json is only read."""
    folder = Path(folder)
    model = load_model(folder)
    card = folder / "README.md"
    inputs = read_card(card.read_text()) if card.is_file() else {}
    inputs.update(sample=write_sample(model, folder), local_path=folder.as_posix())
    if repo_id:
        inputs["repo_id"] = repo_id
    atomic_write(card, render_card(model.config, **inputs))
    restamp_weights(folder / "model.safetensors", weights_metadata(model.config))
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
    online = not (local_files_only or constants.HF_HUB_OFFLINE)
    commit, files, unreachable = (revision if COMMIT_SHA.match(revision or "") else None), None, None
    try:
        with _bounded(HUB_TIMEOUT):
            if online and commit is None:  # which commit the branch or tag is at, and its files
                try:
                    info = HfApi(token=token, **CLIENT).repo_info(text, revision=revision, timeout=HUB_TIMEOUT)
                    commit, files = info.sha, {s.rfilename for s in info.siblings or []}
                except (httpx2.TimeoutException, httpx2.NetworkError) as e:
                    unreachable = e
                except HfHubHTTPError as e:
                    if e.response is not None and e.response.status_code < 500:
                        raise
                    unreachable = e  # the Hub is down: the cache may have it
            if online and commit is not None:
                path = _download(text, commit, files, cache_dir=cache_dir, token=token)
            else:  # offline, or the Hub did not answer: the cache only, no request
                path = snapshot_download(text, revision=revision, cache_dir=cache_dir, token=token,
                                         local_files_only=True, allow_patterns=list(FILES), **CLIENT)
    except LocalEntryNotFoundError as e:
        if isinstance(unreachable, httpx2.TimeoutException):
            raise HubError(f"the Hub did not answer within {HUB_TIMEOUT:g} s while fetching {text}"
                           f"{'@' + revision if revision else ''}, and no copy is in the local cache; try again "
                           f"later, or pass a local folder") from unreachable
        raise _hub_error(e, text, revision) from e
    except httpx2.TimeoutException as e:
        raise HubError(f"the Hub stopped sending {text}{'@' + revision if revision else ''} (no data for "
                       f"{HUB_TIMEOUT:g} s, after retries); try again later: the download resumes where it "
                       f"stopped") from e
    except httpx2.TransportError as e:
        raise HubError(f"the connection to the Hub failed while fetching {text}: {e}; try again later") from e
    except (HfHubHTTPError, EntryNotFoundError, OSError, ValueError) as e:  # map the client's errors, keep the cause
        raise _hub_error(e, text, revision) from e
    if commit is not None and commit != revision:
        # Downloading by commit sha records no branch -> commit ref; write it, so offline loads of the branch work.
        ref = Path(path).parent.parent / "refs" / (revision or "main")
        try:
            if not ref.is_file() or ref.read_text() != commit:
                atomic_write(ref, commit)
        except OSError:
            pass  # a read-only cache: the download itself worked
    return Path(path)


def _download(repo_id: str, commit: str, files: set[str] | None, **kwargs: Any) -> str:
    """The snapshot folder of `commit` in the cache, with config.json, model.safetensors and (when the repo has
    one) README.md downloaded one after another. `files`: the repo's files, when known."""
    if files is not None and FILES[1] not in files:
        pickles = sorted(f for f in files if f.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise ModelLoadError(f"Hub repo {repo_id} has no {FILES[1]} (found {pickles}: pickle files are never "
                                 f"loaded, convert them to safetensors)")
    path = None
    for name in FILES:
        if name == "README.md" and files is not None and name not in files:
            continue
        try:
            path = hf_hub_download(repo_id, name, revision=commit, etag_timeout=HUB_TIMEOUT, **CLIENT, **kwargs)
        except EntryNotFoundError:
            if name != "README.md":
                raise
    return str(Path(path).parent)


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
                if t.dtype != expected[k].dtype and not (t.is_floating_point() and expected[k].is_floating_point()):
                    raise ModelLoadError(f"{path}: tensor {k!r} is {t.dtype} but the model holds "
                                         f"{expected[k].dtype}; the weights and config disagree")
                state[k] = t  # float16 storage is cast to the model's float32 by load_state_dict
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
    try:
        InferenceSpec.from_config(config)  # the pipelines read it back at every call: refuse a bad one here
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{folder / 'config.json'}: invalid inference settings: {e}") from e
    load_weights(model, folder / "model.safetensors")
    model.config, model.source = config, str(source)
    return model.eval().to(device)


# ----------------------------------------------------------------------------------------------- pushing
def _edited_on_hub(api: HfApi, repo_id: str, revision: str | None) -> bool:
    """True when `repo_id` has a README.md that cnnimg-hub did not write, or that was changed since."""
    with tempfile.TemporaryDirectory(prefix="cnnimg-card-") as tmp:
        try:
            path = api.hf_hub_download(repo_id, "README.md", revision=revision, cache_dir=tmp,
                                       etag_timeout=PUSH_TIMEOUT)
        except (EntryNotFoundError, RevisionNotFoundError):
            return False
        return not is_unedited(Path(path).read_text(encoding="utf-8", errors="replace"))


def push_to_hub(folder: str | Path, repo_id: str, *, revision: str | None = None, token: str | bool | None = None,
                private: bool = False, commit_message: str | None = None, create_pr: bool = False,
                overwrite_card: bool = False) -> CommitInfo:
    """Upload a model folder (checked to load first) to `repo_id` in one commit; returns huggingface_hub's
    CommitInfo (`.oid` is the commit sha, `.pr_url` the pull request with `create_pr`).

    The card uploaded is the folder's card written for `repo_id` (its usage loads `repo_id`); a card edited by hand
    in the folder goes as it is. A README.md that was edited on the Hub is kept (with a warning) unless
    `overwrite_card`. `revision` is the branch to commit to (created from main if new); `create_pr` opens a pull
    request against it instead. Every request waits at most PUSH_TIMEOUT seconds. The token comes from the
    argument, HF_TOKEN or the huggingface_hub login, and is never printed or written anywhere.
    """
    folder = Path(folder)
    model = load_model(folder)  # refuse to publish something that does not load
    if not REPO_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a Hub repo id like 'user/name'")
    card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else None
    if card is not None and is_unedited(card):
        card = render_card(model.config, **{**read_card(card), "repo_id": repo_id, "local_path": None})
    api = HfApi(token=token, **CLIENT)
    kept = False
    try:
        with _bounded(PUSH_TIMEOUT):
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            kept = card is not None and not overwrite_card and _edited_on_hub(api, repo_id, revision)
            ops = [CommitOperationAdd(name, str(folder / name)) for name in (FILES[0], FILES[1], SAMPLE)
                   if (folder / name).is_file()]
            if card is not None and not kept:
                ops.append(CommitOperationAdd("README.md", card.encode()))
            info = api.create_commit(repo_id, ops, revision=revision, create_pr=create_pr,
                                     commit_message=commit_message or f"Upload {folder.name} with cnnimg-hub")
    except httpx2.TimeoutException as e:
        raise HubError(f"the Hub did not answer within {PUSH_TIMEOUT:g} s while pushing {folder} to {repo_id}; "
                       f"the commit may not have been made: look at the repo, then push again") from e
    except httpx2.TransportError as e:
        raise HubError(f"pushing {folder} to {repo_id} failed: the Hub could not be reached ({e})") from e
    except HfHubHTTPError as e:
        raise HubError(f"pushing {folder} to {repo_id} failed: {e}") from e
    if kept:
        log.warning("kept the README.md of %s: it was edited on the Hub (push with --overwrite-card, or "
                    "overwrite_card=True, to replace it with this folder's card)", repo_id)
    return info
