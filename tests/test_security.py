"""What a public demo must not give away: files outside its own output/cache folders (through every file-serving
route Gradio 6 has, with encoded and `..` variants), uploads over its size limit, and the Hub token (from HF_TOKEN)
in any output, log, card, config or cache file. Plus the load test of benchmarks/load_test.py, run short.

The app is launched as users run it (`python app.py --port N --weights DIR` in the repository root), with tiny
untrained models, its own Gradio temp folder and its own HF_HOME, so every file it writes can be inspected.
"""
import os
import re
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="cnnimg-gradio-"))

import http.client  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import cnnimg_hub  # noqa: E402
from benchmarks.load_test import stop_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_secretTOKENthatMUSTneverLEAK0123456789"
APP_PY_MARKER = b'QUEUE_SIZE = 16'  # a line of app.py
MAX_UPLOAD = 20 * 1024 * 1024  # tabs.common.MAX_FILE_SIZE ("20mb")


def files_under(folder: Path):
    return [p for p in Path(folder).rglob("*") if p.is_file()]


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def assert_no_secret(folder: Path) -> None:
    leaked = [p for p in files_under(folder) if SECRET.encode() in p.read_bytes()]
    assert not leaked, f"the token is written in {leaked}"


@pytest.fixture(scope="module")
def served(tmp_path_factory, make_weights, free_port):
    """`python app.py` on a free port, with HF_TOKEN set; yields (url, weights, gradio temp dir, HF_HOME, log)."""
    root = tmp_path_factory.mktemp("served")
    weights = make_weights(root / "weights")
    (weights / "private-notes.txt").write_text("weights folder secret\n")
    gradio_tmp, hf_home, log = root / "gradio", root / "hf_home", root / "app.log"
    hf_home.mkdir()
    (hf_home / "token").write_text(SECRET)  # where `hf auth login` keeps it
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(gradio_tmp), "HF_HOME": str(hf_home),
           "HF_TOKEN": SECRET}  # HF_ENDPOINT (the test Hub) is inherited from conftest.py
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu",
                                 "--weights", str(weights)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(url + "/", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.time() < deadline, log.read_text()
                time.sleep(0.5)
        yield url, weights, gradio_tmp, hf_home, log
    finally:
        stop_server(proc)


def get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of `..` or %-escapes)."""
    host = url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------- file routes
ROUTES = ["/gradio_api/file={}", "/gradio_api/file/{}", "/file={}", "/file/{}"]


def variants(path: str) -> list[str]:
    """`path` as-is, %-encoded, double-encoded, and with `..` walks from the folders the app does serve."""
    absolute = str(Path(path).resolve())
    up = "../" * 12
    out = [absolute, quote(absolute, safe=""), quote(quote(absolute, safe=""), safe=""),
           "/" + up + absolute.lstrip("/"), (up + absolute.lstrip("/")).replace("/", "%2F"),
           (up + absolute.lstrip("/")).replace("..", "%2e%2e"), f"{os.environ['GRADIO_TEMP_DIR']}/{up}{absolute}",
           f"{ROOT / 'examples'}/{up}{absolute.lstrip('/')}", f"{ROOT / 'examples'}/../{Path(absolute).name}",
           "file://" + absolute, "\\\\?\\" + absolute]
    try:
        out.append(str(Path(absolute).relative_to(ROOT)))  # relative to the app's working directory
    except ValueError:
        pass
    return out


def targets(weights: Path, hf_home: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (a file the app must not serve, bytes of its content)."""
    readme = ROOT / "README.md" if (ROOT / "README.md").is_file() else ROOT / "pyproject.toml"
    return {"passwd": ("/etc/passwd", b"root:"), "app.py": (str(ROOT / "app.py"), APP_PY_MARKER),
            readme.name: (str(readme), readme.read_bytes()[:60]),
            "config.json": (str(weights / "sr-x2" / "config.json"), b'"model_name": "sr-espcn"'),
            "weights notes": (str(weights / "private-notes.txt"), b"weights folder secret"),
            "token": (str(hf_home / "token"), SECRET.encode()),
            "conftest": (str(ROOT / "tests" / "conftest.py"), b"hub_server")}


def test_no_file_outside_the_app_folders_is_served(served):
    url, weights, _, hf_home, _ = served
    # control: the route works -- an example shipped with the app (in allowed_paths) is served
    example = sorted((ROOT / "examples").glob("*.jpg"))[0]
    status, body = get(url, "/gradio_api/file=" + str(example))
    assert status == 200 and body == example.read_bytes()
    status, body = get(url, "/gradio_api/file=/etc/passwd")
    assert status == 403 and b"File not allowed" in body  # refused explicitly, not by accident
    served_paths = []
    for name, (path, marker) in targets(weights, hf_home).items():
        for route in ROUTES:
            for variant in variants(path):
                status, body = get(url, route.format(variant))
                if marker in body:
                    served_paths.append((name, route.format(variant), status))
    for raw in ["/static/../../../../../../etc/passwd", "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
                "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/assets/..%5c..%5c..%5capp.py",
                "/gradio_api/custom_component/x/client/..%2f..%2f..%2f..%2f..%2f..%2fetc/passwd",
                "/gradio_api/proxy=file:///etc/passwd", "/gradio_api/proxy=http://127.0.0.1:1/etc/passwd",
                "/favicon.ico/../../../../../etc/passwd", "/../../../../../../etc/passwd", "/app.py", "/README.md",
                "/gradio_api/file=..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/gradio_api/file=app.py",
                "/gradio_api/file=./app.py", "/gradio_api/file=%2e/app.py"]:
        status, body = get(url, raw)
        if b"root:" in body or APP_PY_MARKER in body or SECRET.encode() in body:
            served_paths.append(("raw", raw, status))
    assert not served_paths, served_paths


def test_results_are_served_and_uploads_over_the_limit_are_refused(served):
    import httpx
    from gradio_client import Client

    url, _, gradio_tmp, _, _ = served
    client = Client(url + "/", verbose=False)
    gallery, _ = client.predict("generate-fashion-mnist-gan", "", "0", 1, 2, api_name="/generate")
    assert len(gallery) == 2  # results come back through the file route (the control for the test above)

    before = {p.name for p in files_under(gradio_tmp)}
    big = b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_UPLOAD + 1024)
    r = httpx.post(url + "/gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size" in r.text, (r.status_code, r.text[:300])
    after = files_under(gradio_tmp)
    assert not [p for p in after if p.name not in before and p.stat().st_size > MAX_UPLOAD]
    small = httpx.post(url + "/gradio_api/upload", files={"files": ("ok.png", b"x" * 1000, "image/png")}, timeout=60)
    assert small.status_code == 200  # the limit, not the route, refused the big one


# ----------------------------------------------------------------------------------------------- the token
def test_hf_token_from_the_environment_is_never_written_or_printed(served, tmp_path, monkeypatch, capfd, caplog,
                                                                     hub_server):
    """HF_TOKEN set: a push (in-process) and an app load of a repo id (through the served API) leave no trace of
    it in stdout/stderr/logging, the model folder, the caches, the app's log or the app's temp files."""
    from gradio_client import Client, handle_file

    url, _, gradio_tmp, hf_home, log = served
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    folder = cnnimg_hub.save_model(cnnimg_hub.create_model("sr-espcn", scale=2, n_feats=8, n_layers=1),
                                   tmp_path / "m", repo_id="tester/x", description="tiny")
    repo = f"tester/token-{uuid.uuid4().hex[:8]}"
    assert cnnimg_hub.push_to_hub(folder, repo)
    cache = tmp_path / "cache"
    assert cnnimg_hub.load_model(repo, cache_dir=cache).scale == 2
    image = tmp_path / "in.png"
    noise(12, 10).save(image)
    (before, after), *_ = Client(url + "/", verbose=False).predict(handle_file(str(image)), 4, "sr-x2", repo, False,
                                                                   api_name="/upscale")
    assert Image.open(after).size == (24, 20)  # the app loaded the Hub repo (with the token in its environment)
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text
    assert SECRET not in log.read_text()
    for where in (folder, cache, gradio_tmp, Path(os.environ["HF_HOME"]), Path(os.environ["HF_HOME"]).parent / "hub"):
        assert_no_secret(where)
    assert_no_secret(hf_home / "hub")  # the app's own Hugging Face cache (HF_HOME/token is where we put it)
    assert any("models--tester--token-" in str(p) for p in files_under(hf_home / "hub"))  # it did download there


# ----------------------------------------------------------------------------------------------- load test
@pytest.mark.parametrize("client", ["gradio", "http"])
def test_load_test_runs_clean(tmp_path, make_weights, client):
    weights = make_weights(tmp_path / "weights")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load_test.py"), "--weights", str(weights),
                           "--seconds", "8", "--clients", "4", "--max-requests", "200", "--size", "32",
                           "--device", "cpu", "--client", client], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| overall |" in proc.stdout and "errors: 0" in proc.stdout and "peak server RSS" in proc.stdout
    assert ("plain HTTP" if client == "http" else "gradio_client") in proc.stdout
    assert re.search(r"CPU time: server [\d.]+ s \(\d+ ms per request\), clients", proc.stdout)
    for endpoint in ("/classify", "/generate", "/upscale", "/inpaint", "/denoise"):
        assert f"| {endpoint} |" in proc.stdout
