"""Publish the Gradio app as a Hugging Face Space, in one commit:

    python -m cnnimg_hub deploy-space user/name --models user/sr-x4 user/denoise [--private] [--token T]

The Space gets the app (app.py, tabs/), the package, requirements.txt, the example photos, the model folders of
weights/ (so it runs without fetching anything; --no-weights leaves them out, the tabs still load Hub repo ids) and
a README.md whose front matter makes it a Gradio Space: `sdk`, `sdk_version` (the pinned gradio), `app_file`,
`models:` (the model repos it shows: --models, plus any folder whose card names the repo it was pushed to) and
`suggested_hardware`, the hint the Hub shows to whoever duplicates it.
"""
from __future__ import annotations

import re
from pathlib import Path

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, SpaceCardData
from huggingface_hub.errors import HfHubHTTPError

from ._card import SAMPLE, read_card
from ._folder import FILES
from ._hub import CLIENT, PUSH_TIMEOUT, REPO_ID, _bounded, read_config
from .errors import CnnImgError, HubError

ROOT = Path(__file__).resolve().parent.parent  # the checkout the Space is made from
SOURCES = {"app.py": None, "requirements.txt": None, "cnnimg_hub": "**/*.py", "tabs": "**/*.py", "examples": "*"}
HARDWARE = "cpu-basic"  # the models run in about a second per 512 px image on 2 vCPUs


def _gradio_version(requirements: str) -> str | None:
    match = re.search(r"^gradio(?:\[[\w,]+\])?==([\w.]+)", requirements, re.M)
    return match.group(1) if match else None


def space_readme(repo_id: str, models: list[str], hardware: str = HARDWARE, requirements: str = "") -> str:
    """The Space's README.md: the front matter the Hub reads, and a few lines for people."""
    data = SpaceCardData(title=repo_id.split("/")[1], sdk="gradio", sdk_version=_gradio_version(requirements),
                         app_file="app.py", license="mit", models=models or None, emoji="🖼️", colorFrom="indigo",
                         colorTo="green", pinned=False, suggested_hardware=hardware,
                         short_description="Small CNNs for classic image tasks next to classical baselines")
    lines = [f"# {repo_id}", "", "Small convolutional networks for classifying, generating, super-resolving, "
             "inpainting and denoising images, each shown next to the classical method it should beat.", ""]
    if models:
        lines += ["Models:", ""] + [f"- [{m}](https://huggingface.co/{m})" for m in models] + [""]
    lines += ["Made with `python -m cnnimg_hub deploy-space` from cnnimg-hub. Every tab also takes a Hub repo id "
              "(`user/name`) of a compatible model.", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


def space_files(root: Path = ROOT, weights: Path | None = ROOT / "weights") -> dict[str, Path]:
    """{path in the Space: local file} for the app, the package, requirements, examples and model folders."""
    files: dict[str, Path] = {}
    for name, pattern in SOURCES.items():
        path = root / name
        if pattern is None and path.is_file():
            files[name] = path
        elif pattern is not None and path.is_dir():
            files.update({p.relative_to(root).as_posix(): p for p in sorted(path.glob(pattern))
                          if p.is_file() and "__pycache__" not in p.parts})
    if "app.py" not in files or "cnnimg_hub/__init__.py" not in files:
        raise CnnImgError(f"{root} has no app.py and cnnimg_hub/: run deploy-space from a cnnimg-hub checkout")
    for folder in sorted(p for p in (weights.iterdir() if weights and weights.is_dir() else []) if p.is_dir()):
        read_config(folder)  # only model folders
        files.update({f"weights/{folder.name}/{f}": folder / f for f in (*FILES, SAMPLE) if (folder / f).is_file()})
    return files


def pushed_repos(files: dict[str, Path]) -> list[str]:
    """The Hub repos the bundled model folders' cards say they were pushed to."""
    cards = [p for name, p in files.items() if name.startswith("weights/") and name.endswith("/README.md")]
    return [r for r in (read_card(p.read_text()).get("repo_id") for p in cards) if r]


def deploy_space(repo_id: str, *, models: list[str] = (), weights: Path | None = ROOT / "weights",
                 hardware: str = HARDWARE, private: bool = False, token: str | bool | None = None,
                 root: Path = ROOT) -> str:
    """Create (or update) the Gradio Space `repo_id` with everything the app needs, in one commit; returns its
    URL. Every request waits at most PUSH_TIMEOUT seconds; the token is never printed or written."""
    if not REPO_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a Space id like 'user/name'")
    bad = [m for m in models if not REPO_ID.match(m)]
    if bad:
        raise HubError(f"--models takes model repo ids like 'user/name', not {bad}")
    files = space_files(root, weights)
    models = list(dict.fromkeys([*models, *pushed_repos(files)]))
    requirements = files["requirements.txt"].read_text() if "requirements.txt" in files else ""
    readme = space_readme(repo_id, models, hardware, requirements).encode()
    operations = [CommitOperationAdd(name, str(path)) for name, path in files.items()]
    operations.append(CommitOperationAdd("README.md", readme))
    api = HfApi(token=token, **CLIENT)
    try:
        with _bounded(PUSH_TIMEOUT):
            url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            api.create_commit(repo_id, operations, repo_type="space",
                              commit_message=f"Deploy the cnnimg-hub app ({len(operations)} files)")
    except httpx2.TimeoutException as e:
        raise HubError(f"the Hub did not answer within {PUSH_TIMEOUT:g} s while deploying the Space {repo_id}; "
                       f"the commit may not have been made: look at the Space, then deploy again") from e
    except (httpx2.TransportError, HfHubHTTPError) as e:
        raise HubError(f"deploying the Space {repo_id} failed: {e}") from e
    return str(url)
