"""tests/hub_server.py driven by the REAL huggingface_hub client over HTTP.

tests/conftest.py starts the server and sets HF_ENDPOINT before huggingface_hub is
imported, so the plain client functions below talk to 127.0.0.1 only.
"""

import http.client
import importlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from types import SimpleNamespace

import httpx2  # the HTTP library used by the installed huggingface_hub
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_server import HubServer

CONFIG = {"arch": "cnn", "channels": [3, 16, 32]}
WEIGHTS = bytes(range(256)) * 8 + b"\x00\xff\xfe"  # not valid UTF-8 on purpose
README = "---\nlicense: mit\ntags:\n- image-classification\n---\n# Test model\n"


@pytest.fixture
def api():
    return HfApi()


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "weights.bin").write_bytes(WEIGHTS)
    (folder / "README.md").write_text(README)
    return folder


@pytest.fixture
def repo_id(api, hub_server, model_dir):
    """A fresh repo holding model_dir (one upload commit on top of the initial one)."""
    repo_id = f"tester/model-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    api.upload_folder(folder_path=model_dir, repo_id=repo_id, commit_message="v1")
    return repo_id


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def raw_request(server: HubServer, method: str, path: str, body: bytes = b"") -> int:
    """Send a request exactly as written (no client-side URL normalisation); return the status."""
    conn = http.client.HTTPConnection(server.endpoint.removeprefix("http://"), timeout=5)
    try:
        conn.request(method, path, body=body or None)
        return conn.getresponse().status
    finally:
        conn.close()


# ---------------------------------------------------------------- upload / download


def test_upload_folder_then_download_is_byte_identical(api, hub_server, model_dir, hf_cache):
    repo_id = f"tester/roundtrip-{uuid.uuid4().hex[:8]}"
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id and url.startswith(hub_server.endpoint)
    api.create_repo(repo_id, exist_ok=True)  # 409 answered with the url => accepted
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id)
    assert err.value.response.status_code == 409

    before = len(hub_server.requests)
    info = api.upload_folder(folder_path=model_dir, repo_id=repo_id, commit_message="v1")
    assert info.oid == hub_server.commits(repo_id)[-1]
    # "regular" upload mode for every file => the client never asks for Xet tokens or LFS.
    upload_paths = [path for _, path in hub_server.requests[before:]]
    assert not [p for p in upload_paths if "xet" in p or "lfs" in p], upload_paths

    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "README.md", "config.json", "weights.bin"]
    for name, content in [("config.json", json.dumps(CONFIG).encode()), ("weights.bin", WEIGHTS),
                          ("README.md", README.encode())]:  # fmt: skip
        path = hf_hub_download(repo_id, name, cache_dir=hf_cache)
        assert read(path) == content
        assert f"/snapshots/{info.oid}/" in path
    assert hub_server.files(repo_id)["weights.bin"] == WEIGHTS


def test_second_commit_and_download_by_old_sha(api, hub_server, repo_id, model_dir, hf_cache):
    first = hub_server.commits(repo_id)[-1]
    (model_dir / "config.json").write_text(json.dumps({**CONFIG, "channels": [3, 64]}))
    (model_dir / "weights.bin").unlink()
    second = api.upload_folder(folder_path=model_dir, repo_id=repo_id, delete_patterns="*.bin").oid

    assert hub_server.commits(repo_id)[-2:] == [first, second]
    assert [c.commit_id for c in api.list_repo_commits(repo_id)][:2] == [second, first]
    assert api.model_info(repo_id).sha == second
    assert api.model_info(repo_id, revision=first).sha == first

    old = hf_hub_download(repo_id, "config.json", revision=first, cache_dir=hf_cache)
    new = hf_hub_download(repo_id, "config.json", cache_dir=hf_cache)
    assert json.loads(read(old)) == CONFIG
    assert json.loads(read(new))["channels"] == [3, 64]
    assert read(hf_hub_download(repo_id, "weights.bin", revision=first, cache_dir=hf_cache)) == WEIGHTS
    with pytest.raises(EntryNotFoundError):  # deleted on main by delete_patterns
        hf_hub_download(repo_id, "weights.bin", cache_dir=hf_cache)

    # Re-uploading identical content is a no-op: the client compares the preupload "oid".
    assert api.upload_folder(folder_path=model_dir, repo_id=repo_id).oid == second
    assert hub_server.commits(repo_id)[-1] == second


def test_snapshot_download_then_offline(api, hub_server, repo_id, hf_cache):
    folder = snapshot_download(repo_id, cache_dir=hf_cache)
    assert read(f"{folder}/weights.bin") == WEIGHTS
    assert json.loads(read(f"{folder}/config.json")) == CONFIG

    before = len(hub_server.requests)
    assert snapshot_download(repo_id, cache_dir=hf_cache, local_files_only=True) == folder
    assert read(hf_hub_download(repo_id, "weights.bin", cache_dir=hf_cache, local_files_only=True)) == WEIGHTS
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", cache_dir=hf_cache, local_files_only=True)
    assert len(hub_server.requests) == before  # nothing left the process

    # HF_HUB_OFFLINE=1 is read at import time => check it in a fresh interpreter.
    script = textwrap.dedent(f"""
        import json
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
        out = {{"snapshot": snapshot_download({repo_id!r}, cache_dir={str(hf_cache)!r}),
               "file": hf_hub_download({repo_id!r}, "config.json", cache_dir={str(hf_cache)!r})}}
        try:
            hf_hub_download({repo_id!r}, "not-cached.txt", cache_dir={str(hf_cache)!r})
        except LocalEntryNotFoundError:
            out["not_cached"] = "LocalEntryNotFoundError"
        try:
            HfApi().model_info({repo_id!r})
        except OfflineModeIsEnabled:
            out["api"] = "OfflineModeIsEnabled"
        print(json.dumps(out))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["snapshot"] == folder
    assert json.loads(read(out["file"])) == CONFIG
    assert out["not_cached"] == "LocalEntryNotFoundError" and out["api"] == "OfflineModeIsEnabled"
    assert len(hub_server.requests) == before


def test_repo_survives_server_restart(hub_server, repo_id, hf_cache):
    with HubServer(hub_server.root) as other:  # same storage, new port, explicit endpoint=
        path = hf_hub_download(repo_id, "weights.bin", cache_dir=hf_cache, endpoint=other.endpoint)
        assert read(path) == WEIGHTS
        assert HfApi(endpoint=other.endpoint).model_info(repo_id).sha == hub_server.commits(repo_id)[-1]
        assert other.requests


# ---------------------------------------------------------------- errors


def test_missing_repo_revision_and_file(api, hub_server, repo_id, hf_cache):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/does-not-exist", "config.json", cache_dir=hf_cache)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("tester/does-not-exist", cache_dir=hf_cache)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tester/does-not-exist")

    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "config.json", revision="no-such-branch", cache_dir=hf_cache)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(repo_id, revision="0" * 40, cache_dir=hf_cache)

    with pytest.raises(EntryNotFoundError) as err:
        hf_hub_download(repo_id, "nope.txt", cache_dir=hf_cache)
    assert isinstance(err.value, RemoteEntryNotFoundError) and err.value.response.status_code == 404
    assert api.file_exists(repo_id, "config.json") and not api.file_exists(repo_id, "nope.txt")


def test_fail_mode_500(api, hub_server, repo_id, hf_cache, monkeypatch):
    cached = hf_hub_download(repo_id, "config.json", cache_dir=hf_cache)
    hub_server.fail_mode = "500"

    # Plain API calls are not retried: HfHubHTTPError right away.
    with pytest.raises(HfHubHTTPError) as err:
        api.model_info(repo_id)
    assert err.value.response.status_code == 500

    # Downloads fall back to the cache after a single failed HEAD (no retry, no sleep).
    start = time.monotonic()
    assert hf_hub_download(repo_id, "config.json", cache_dir=hf_cache) == cached
    assert time.monotonic() - start < 2

    # Nothing cached: the client retries the HEAD with exponential backoff (~23 s of
    # sleeping in real life), then raises LocalEntryNotFoundError caused by the 500.
    sleeps = []
    http_module = importlib.import_module("huggingface_hub.utils._http")
    monkeypatch.setattr(http_module, "time", SimpleNamespace(sleep=sleeps.append))  # only used for backoff sleeps
    before = len(hub_server.requests)
    with pytest.raises(LocalEntryNotFoundError) as err:
        hf_hub_download(repo_id, "weights.bin", cache_dir=hf_cache)
    assert isinstance(err.value.__cause__, HfHubHTTPError) and err.value.__cause__.response.status_code == 500
    assert sleeps == [1, 2, 4, 8, 8]
    assert len(hub_server.requests) - before == 1 + 6  # first HEAD, then 1 try + 5 retries


def test_fail_mode_stall(api, hub_server, repo_id, hf_cache):
    cached = hf_hub_download(repo_id, "config.json", cache_dir=hf_cache)
    hub_server.fail_mode = "stall"
    hub_server.stall_seconds = 10

    start = time.monotonic()
    assert hf_hub_download(repo_id, "config.json", cache_dir=hf_cache, etag_timeout=0.5) == cached
    with pytest.raises(httpx2.TimeoutException):
        api.model_info(repo_id, timeout=0.5)
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------- path traversal


def test_path_traversal_is_refused(api, hub_server, repo_id):
    # Through the real client (it URL-quotes "/" in these values, the server decodes them).
    with pytest.raises(BadRequestError):
        list(api.list_repo_tree(repo_id, path_in_repo="../.."))
    with pytest.raises(BadRequestError):
        api.model_info(repo_id, revision="../../etc")

    # Raw requests, bypassing any client-side validation or URL normalisation.
    ns, name = repo_id.split("/")
    evil_commit = b"\n".join(json.dumps(line).encode() for line in [
        {"key": "header", "value": {"summary": "x"}},
        {"key": "file", "value": {"path": "../../evil.txt", "content": "eA==", "encoding": "base64"}},
    ])  # fmt: skip
    for method, path, body in [
        ("GET", f"/{ns}/{name}/resolve/main/..%2F..%2F..%2Fetc%2Fpasswd", b""),
        ("GET", f"/{ns}/{name}/resolve/main/sub/../../../../etc/passwd", b""),
        ("HEAD", f"/{ns}/{name}/resolve/..%2F..%2Fmain/config.json", b""),
        ("GET", f"/{ns}/..%2F..%2F{name}/resolve/main/config.json", b""),
        ("GET", f"/api/models/..%2F..%2Fetc/{name}/tree/main", b""),
        ("POST", f"/api/models/{ns}/{name}/commit/main", evil_commit),
        ("POST", "/api/repos/create", b'{"name": "../../evil", "type": "model"}'),
    ]:
        assert raw_request(hub_server, method, path, body) == 400, (method, path)
    assert not (hub_server.root.parent / "evil.txt").exists()
    assert set(hub_server.files(repo_id)) == {".gitattributes", "README.md", "config.json", "weights.bin"}
