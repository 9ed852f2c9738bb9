"""The real huggingface_hub client against the local Hub-compatible server (tests/hub_server.py): push -> pull
round trips for every model family, revisions, offline use of the cache, and the errors a user can meet."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_models import run, tiny

from cnnimg_hub import load_model, push_to_hub, save_model
from cnnimg_hub.errors import HubError, ModelLoadError, ModelNotFoundError

FAMILIES = ["classifier-cifar10", "generator-dcgan", "generator-vae", "sr-espcn", "inpaint-gated-unet",
            "denoise-ffdnet"]
REPO = Path(__file__).resolve().parents[1]


def push(model, tmp_path: Path, repo_id: str, **kw) -> str:
    folder = save_model(model, tmp_path / repo_id.replace("/", "--"))
    return push_to_hub(folder, repo_id, **kw)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_round_trips(name, tmp_path, hub_server, hf_cache):
    model = tiny(name)
    repo = f"tester/{name}"
    sha = push(model, tmp_path, repo)
    assert hub_server.commits(repo)[-1] == sha
    pulled = load_model(repo, cache_dir=hf_cache)
    folder = tmp_path / repo.replace("/", "--")
    snapshot = Path(next(hf_cache.rglob("model.safetensors"))).parent
    for f in ("config.json", "model.safetensors", "README.md"):
        assert (snapshot / f).read_bytes() == (folder / f).read_bytes(), f
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
    sha = push_to_hub(folder, "tester/tokened", token=secret)
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
