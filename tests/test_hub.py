"""The real huggingface_hub client against the local Hub-compatible server (tests/hub_server.py): push -> pull
round trips for every model family, revisions, offline use of the cache, and the errors a user can meet."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import run, tiny

from cnnimg_hub import load_model, push_to_hub, save_model
from cnnimg_hub.errors import HubError, ModelLoadError, ModelNotFoundError

FAMILIES = ["classifier-cifar10", "generator-dcgan", "generator-vae", "sr-espcn", "inpaint-gated-unet",
            "denoise-ffdnet"]
REPO = Path(__file__).resolve().parents[1]


def push(model, tmp_path: Path, repo_id: str, **kw) -> str:
    folder = save_model(model, tmp_path / repo_id.replace("/", "--"))
    return push_to_hub(folder, repo_id, **kw).oid


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_round_trips(name, tmp_path, hub_server, hf_cache):
    model = tiny(name)
    repo = f"tester/{name}"
    sha = push(model, tmp_path, repo)
    assert hub_server.commits(repo)[-1] == sha
    pulled = load_model(repo, cache_dir=hf_cache)
    folder = tmp_path / repo.replace("/", "--")
    snapshot = Path(next(hf_cache.rglob("model.safetensors"))).parent
    for f in ("config.json", "model.safetensors"):
        assert (snapshot / f).read_bytes() == (folder / f).read_bytes(), f
    card = (snapshot / "README.md").read_text()  # the folder's card, written for the repo it went to
    assert f'load_model("{repo}")' in card and f"# {repo}\n" in card and "path/to" not in card
    assert f'load_model("{folder.name}")' in (folder / "README.md").read_text()  # never an absolute path
    torch.testing.assert_close(run(pulled), run(model), rtol=0, atol=0)


def test_trained_shape_model_and_revisions(tmp_path, hub_server, hf_cache):
    """A full-size ESPCN x4 (the shipped shape): push twice, pull both, pin the first by commit sha."""
    repo = "tester/sr-x4-revisions"
    first = tiny("sr-espcn", scale=4, n_feats=32, n_layers=4)
    sha1 = push(first, tmp_path / "a", repo)
    second = tiny("sr-espcn", scale=4, n_feats=32, n_layers=4)
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.01)
    sha2 = push(second, tmp_path / "b", repo, commit_message="second")
    assert sha1 != sha2 and hub_server.commits(repo)[-2:] == [sha1, sha2]
    x = torch.rand(1, 3, 8, 8)
    latest = load_model(repo, cache_dir=hf_cache)
    pinned = load_model(repo, revision=sha1, cache_dir=hf_cache)
    also_pinned = load_model(f"{repo}@{sha1}", cache_dir=hf_cache)
    torch.testing.assert_close(latest(x), second(x), rtol=0, atol=0)
    torch.testing.assert_close(pinned(x), first(x), rtol=0, atol=0)
    torch.testing.assert_close(also_pinned(x), first(x), rtol=0, atol=0)


def test_push_to_a_branch(tmp_path, hub_server, hf_cache):
    repo = "tester/branchy"
    push(tiny("sr-espcn", scale=2), tmp_path / "a", repo)
    push(tiny("sr-espcn", scale=3), tmp_path / "b", repo, revision="x3")
    assert load_model(repo, cache_dir=hf_cache).scale == 2
    assert load_model(repo, revision="x3", cache_dir=hf_cache).scale == 3


def test_offline_cache(tmp_path, hub_server, hf_cache):
    repo = "tester/offline"
    model = tiny("denoise-ffdnet")
    push(model, tmp_path, repo)
    load_model(repo, cache_dir=hf_cache)  # fills the cache
    n = len(hub_server.requests)
    cached = load_model(repo, cache_dir=hf_cache, local_files_only=True)
    assert len(hub_server.requests) == n  # no request at all
    torch.testing.assert_close(run(cached), run(model), rtol=0, atol=0)
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        load_model("tester/never-downloaded", cache_dir=hf_cache, local_files_only=True)
    # the real switch users flip, HF_HUB_OFFLINE=1, is read at import time: check it in a fresh process
    code = ("import sys; from cnnimg_hub import load_model; from cnnimg_hub.errors import ModelNotFoundError\n"
            f"m = load_model({repo!r}, cache_dir={str(hf_cache)!r}); print('loaded', m.config['model_name'])\n"
            "try:\n    load_model('tester/absent', cache_dir=sys.argv[1])\n"
            "except ModelNotFoundError as e:\n    print('refused:', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(hf_cache)], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "loaded denoise-ffdnet" in out.stdout and "refused:" in out.stdout and "HF_HUB_OFFLINE" in out.stdout


def test_hub_down_uses_cache_else_says_so(tmp_path, hub_server, hf_cache):
    repo = "tester/flaky"
    push(tiny("sr-espcn", scale=2), tmp_path, repo)
    load_model(repo, cache_dir=hf_cache)
    hub_server.fail_mode = "500"
    assert load_model(repo, cache_dir=hf_cache).scale == 2  # served from the cache
    with pytest.raises(ModelNotFoundError, match="Hub cannot be reached"):
        load_model("tester/flaky-uncached", cache_dir=hf_cache)


def test_missing_repo_and_revision(hf_cache, hub_server, tmp_path):
    with pytest.raises(ModelNotFoundError, match="'tester/does-not-exist' was not found"):
        load_model("tester/does-not-exist", cache_dir=hf_cache)
    push(tiny("sr-espcn", scale=2), tmp_path, "tester/has-main")
    with pytest.raises(ModelNotFoundError, match="revision 'nope' does not exist"):
        load_model("tester/has-main", revision="nope", cache_dir=hf_cache)
    for bad in ["../../etc", "main/../../x"]:
        with pytest.raises(ModelNotFoundError, match="not a valid revision"):
            load_model("tester/has-main", revision=bad, cache_dir=hf_cache)


def test_repo_whose_weights_do_not_match_config(tmp_path, hub_server, hf_cache):
    """Publish a mismatched folder with the raw client (our push_to_hub refuses to), then load it."""
    from huggingface_hub import HfApi

    folder = save_model(tiny("denoise-ffdnet"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["n_feats"] = 12
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        push_to_hub(folder, "tester/mismatch")
    api = HfApi()
    api.create_repo("tester/mismatch", exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id="tester/mismatch")
    with pytest.raises(ModelLoadError, match=r"model.safetensors: tensor .* config.json implies"):
        load_model("tester/mismatch", cache_dir=hf_cache)


def test_pickle_only_repo_is_refused(tmp_path, hub_server, hf_cache):
    from huggingface_hub import HfApi

    folder = save_model(tiny("sr-espcn", scale=2), tmp_path / "m")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle bytes that must never be unpickled")
    api = HfApi()
    api.create_repo("tester/pickled", exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id="tester/pickled")
    with pytest.raises(ModelLoadError, match="pickle files are never loaded"):
        load_model("tester/pickled", cache_dir=hf_cache)


def test_token_is_never_written_or_printed(tmp_path, hub_server, capsys, caplog):
    secret = "hf_THISisAsecretTOKENvalue123"
    folder = save_model(tiny("sr-espcn", scale=2), tmp_path / "m")
    sha = push_to_hub(folder, "tester/tokened", token=secret).oid
    assert sha
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err + caplog.text
    for f in folder.iterdir():
        assert secret.encode() not in f.read_bytes()
    hub = Path(os.environ["HF_HOME"]).parent / "hub"
    assert not any(secret.encode() in p.read_bytes() for p in hub.rglob("*") if p.is_file())


def test_push_errors_are_clear(tmp_path, hub_server):
    folder = save_model(tiny("sr-espcn", scale=2), tmp_path / "m")
    with pytest.raises(HubError, match="not a Hub repo id"):
        push_to_hub(folder, "no-namespace")
    hub_server.fail_mode = "500"
    with pytest.raises(HubError, match="pushing .* failed"):
        push_to_hub(folder, "tester/down")


# ----------------------------------------------------------------------------------------------- cards fit for the Hub
def test_card_front_matter_results_and_paths(tmp_path):
    """metrics: in the front matter, only Hub dataset ids (the rest named in the text), no absolute path."""
    from huggingface_hub import ModelCard

    evals = [{"dataset_name": "cifar10", "dataset_split": "test", "metric_type": "accuracy", "metric_value": 0.5,
              "metric_name": "top-1 accuracy"},
             {"dataset_name": "Set5 (MATLAB LR)", "metric_type": "psnr", "metric_value": 30.25},
             {"dataset_name": "McMaster", "metric_type": "psnr", "metric_value": 33.0}]
    training = {"data": "/work/shared/datasets", "train_sets": ["T91"], "nested": {"cache": "/home/me/x"},
                "lineage": [{"run": "a", "init_from": "/tmp/old-run", "steps": 3, "images_seen": 9}]}
    folder = save_model(tiny("classifier-cifar10"), tmp_path / "m", eval_results=evals,
                        datasets=["cifar10", "T91"], training_config=training)
    text = (folder / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.metrics == ["accuracy", "psnr"] and card.data.datasets == ["uoft-cs/cifar10"]
    # Set5's images are on the Hub (the MATLAB LR names how the input was made); McMaster is named in the text only
    assert [(e.dataset_type, e.dataset_name, e.metric_value) for e in card.data.eval_results] == [
        ("uoft-cs/cifar10", "cifar10", 0.5), ("eugenesiow/Set5", "Set5 (MATLAB LR)", 30.25)]
    assert "| Set5 (MATLAB LR) |  | psnr | psnr | 30.25 |" in text and "| McMaster |  | psnr | psnr | 33.0 |" in text
    assert "- T91\n" in text
    assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text
    for section in ("## Intended use", "## Limitations", "## Evaluation", "Top-1 and top-5 accuracy"):
        assert section in text
    assert f'load_model("m")' in text


def test_card_reads_back_what_it_was_written_from(tmp_path):
    from cnnimg_hub._card import is_unedited, read_card, render_card

    evals = [{"dataset_name": "CBSD68", "dataset_split": None, "metric_type": "psnr", "metric_value": 31.2,
              "metric_name": "PSNR (sigma 25)"}]
    folder = save_model(tiny("denoise-ffdnet"), tmp_path / "d", sample_image=True, eval_results=evals,
                        datasets=["BSD200"], training_config={"max_sigma": 50, "train_sets": ["BSD200"]},
                        description="A tiny denoiser.")
    text = (folder / "README.md").read_text()
    assert is_unedited(text) and not is_unedited(text.replace("A tiny", "An edited"))
    inputs = read_card(text)
    assert inputs["eval_results"] == evals and inputs["datasets"] == ["BSD200"]
    assert inputs["description"] == "A tiny denoiser." and inputs["sample"] == "sample.jpg"
    config = json.loads((folder / "config.json").read_text())
    assert render_card(config, **inputs, local_path=folder.as_posix()) == text
    assert "![before and after: denoising](sample.jpg)" in text
    assert 0 < (folder / "sample.jpg").stat().st_size < 150_000
    assert f"sigma uniform in [0, {config['max_sigma']:g}]" in text and "from photo patches (BSD200)" not in text


def test_refresh_card_keeps_tensors_and_stamps_metadata(tmp_path):
    """An old-layout folder (results and dataset names in the front matter) gets the new card and header."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from cnnimg_hub._hub import refresh_card

    model = tiny("sr-espcn", scale=2)
    folder = save_model(model, tmp_path / "sr")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt", "model_name": "sr-espcn"})
    old = ("---\ndatasets:\n- T91\nlicense: mit\nmodel-index:\n- name: sr-espcn\n  results:\n  - task:\n"
           "      type: image-to-image\n    dataset:\n      name: Set5 (MATLAB LR)\n      type: set5-(matlab-lr)\n"
           "    metrics:\n    - type: psnr\n      value: 33.5\n      name: PSNR (Y, x2)\n---\n\n# sr-espcn\n\n"
           "`sr-espcn` (ESPCN) for **super-resolution**, 1 parameters.\n\nOld description.\n\n## Usage\n\n"
           "model = load_model(\"path/to/this/folder\")\n\n## Training\n\n```json\n"
           '{\n  "data": "/work/shared/datasets",\n  "train_sets": ["T91"]\n}\n```\n')
    (folder / "README.md").write_text(old)
    weights = (folder / "model.safetensors").read_bytes()
    header = 8 + int.from_bytes(weights[:8], "little")
    refresh_card(folder)
    new = (folder / "model.safetensors").read_bytes()
    assert new[8 + int.from_bytes(new[:8], "little"):] == weights[header:]  # tensor bytes identical
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        meta = f.metadata()
        assert all(torch.equal(f.get_tensor(k), v) for k, v in state.items())
    assert meta["task"] == "super-resolution" and meta["architecture"] == "ESPCN" and meta["library_version"]
    text = (folder / "README.md").read_text()
    assert "| Set5 (MATLAB LR) |  | PSNR (Y, x2) | psnr | 33.5 |" in text and "- T91" in text
    assert "set5-(matlab-lr)" not in text and "/work/" not in text and "path/to" not in text
    assert "Old description." in text and "PIL bicubic downscaling only" in text and (folder / "sample.jpg").is_file()
    torch.testing.assert_close(run(load_model(folder)), run(model), rtol=0, atol=0)


ABSOLUTE = re.compile(r"(?<![\w.])(/(work|home|usr|tmp|root|mnt|opt|var|srv|Users|private)/|[A-Za-z]:\\|~/)")


@pytest.mark.parametrize("folder", sorted(p.name for p in (REPO / "weights").iterdir() if p.is_dir()))
def test_shipped_folders_are_fit_for_the_hub(folder):
    """Every folder in weights/: no absolute path in its card or config, Hub-valid metadata, the local usage form,
    a sample picture for restoration models, full safetensors metadata. After shipping new weights, run
    `python -m cnnimg_hub refresh-card weights/*`."""
    from huggingface_hub import ModelCard
    from safetensors import safe_open

    from cnnimg_hub._card import HUB_DATASETS, is_unedited, read_card
    from cnnimg_hub.tasks import TASKS

    path = REPO / "weights" / folder
    text, config = (path / "README.md").read_text(), json.loads((path / "config.json").read_text())
    for name, content in (("README.md", text), ("config.json", json.dumps(config))):
        assert not ABSOLUTE.search(content), f"{folder}/{name}: {ABSOLUTE.search(content).group(0)}"
    assert is_unedited(text), f"{folder}: run python -m cnnimg_hub refresh-card weights/{folder}"
    card, inputs = ModelCard(text), read_card(text)
    assert set(card.data.datasets or []) <= set(HUB_DATASETS.values())
    assert all(e.dataset_type in HUB_DATASETS.values() for e in card.data.eval_results or [])
    assert inputs["eval_results"] and card.data.metrics
    assert f'load_model("{inputs.get("repo_id") or "weights/" + folder}")' in text  # the repo once pushed
    for section in ("## Intended use", "## Limitations", "## Evaluation"):
        assert section in text
    if TASKS[config["task"]].restores:
        assert "](sample.jpg)" in text and 0 < (path / "sample.jpg").stat().st_size < 150_000
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert {k: meta.get(k) for k in ("model_name", "task", "architecture", "library_version")} == {
        k: str(config[k]) for k in ("model_name", "task", "architecture", "library_version")}


# ----------------------------------------------------------------------------------------------- polite pushes
def test_push_pull_request_card_kept_and_user_agent(tmp_path, hub_server, hf_cache, caplog):
    from huggingface_hub import HfApi

    repo = "tester/polite"
    folder = save_model(tiny("sr-espcn", scale=2), tmp_path / "m", eval_results=[
        {"dataset_name": "Set5", "metric_type": "psnr", "metric_value": 30.0}])
    n = len(hub_server.user_agents)
    first = push_to_hub(folder, repo)
    load_model(repo, cache_dir=hf_cache)
    agents = hub_server.user_agents[n:]
    assert agents and all("cnnimg-hub/" in a for a in agents), agents

    # an edit made on the Hub survives the next push, unless overwrite_card
    edited = hub_server.files(repo)["README.md"].decode().replace("## Intended use", "## Intended use\n\nMine.")
    HfApi().upload_file(path_or_fileobj=edited.encode(), path_in_repo="README.md", repo_id=repo)
    with caplog.at_level("WARNING"):
        push_to_hub(folder, repo, commit_message="again")
    assert hub_server.files(repo)["README.md"].decode() == edited and "edited on the Hub" in caplog.text
    push_to_hub(folder, repo, overwrite_card=True)
    assert "Mine." not in hub_server.files(repo)["README.md"].decode()

    # a pull request leaves main alone and loads by its ref
    main = hub_server.files(repo)
    other = save_model(tiny("sr-espcn", scale=3), tmp_path / "x3")
    info = push_to_hub(other, repo, create_pr=True)
    assert info.pr_url.endswith("/discussions/1") and info.pr_revision == "refs/pr/1"
    assert hub_server.files(repo) == main
    assert load_model(f"{repo}@refs/pr/1", cache_dir=hf_cache).scale == 3
    assert load_model(repo, cache_dir=hf_cache).scale == 2
    assert first.oid in hub_server.commits(repo)


def test_push_stalled_mid_upload_times_out(tmp_path, hub_server, monkeypatch):
    import time

    from cnnimg_hub import _hub

    monkeypatch.setattr(_hub, "PUSH_TIMEOUT", 1.0)
    folder = save_model(tiny("sr-espcn", scale=2), tmp_path / "m")
    repo = "tester/stalled-upload"
    push_to_hub(folder, repo)  # the repo exists: the next push goes straight to the upload
    hub_server.fail_mode = "stall-upload"
    t0 = time.monotonic()
    with pytest.raises(HubError, match=r"did not answer within 1 s while pushing .* push again"):
        push_to_hub(save_model(tiny("sr-espcn", scale=3), tmp_path / "n"), repo)
    assert time.monotonic() - t0 < 15
    assert ("POST", f"/api/models/{repo}/commit/main") in hub_server.requests


def test_download_stalled_mid_file_times_out(tmp_path, hub_server, hf_cache, monkeypatch):
    import time

    from cnnimg_hub import _hub

    repo = "tester/stalled-download"
    push(tiny("sr-espcn", scale=2), tmp_path, repo)
    monkeypatch.setattr(_hub, "HUB_TIMEOUT", 0.5)
    hub_server.fail_mode = "stall-download"
    t0 = time.monotonic()
    with pytest.raises(HubError, match=r"stopped sending tester/stalled-download \(no data for 0.5 s"):
        load_model(repo, cache_dir=hf_cache)
    assert time.monotonic() - t0 < 20  # the client resumes 5 times, 1 s apart
    hub_server.fail_mode = None
    assert load_model(repo, cache_dir=hf_cache).scale == 2  # and the next try completes it
