"""Load test of the demo: parallel gradio_client users on every tab's endpoint, then a Markdown report.

    python benchmarks/load_test.py [--weights weights] [--clients 16] [--seconds 60] [--max-requests 2000]
    python benchmarks/load_test.py --mixed [--bm3d-size 1000] ...   # BM3D on a 1 Mpx photo beside the others

Starts ``python app.py`` on 127.0.0.1 (a free port unless --port is given) with the model folders of --weights
(one of each task is needed), sends small images to /classify, /generate, /upscale, /inpaint and /denoise from
--clients threads, round robin, until --seconds have passed or --max-requests were sent, and samples the server's
resident memory (psutil) the whole time. It prints requests/s, p50/p95 latency per endpoint and overall, the errors,
the peak RSS and the CPU time the server and the clients used per request, stops the server, and exits 1 when any
request failed (2 when the server could not be started).

Each client is a `gradio_client.Client` (--client gradio, the default) or a plain HTTP client of Gradio's documented
REST API (--client http: upload the inputs, POST /gradio_api/call/<name>, read the event stream, download the
result files, as `curl` would). On one small machine the clients share the server's cores: 16 gradio_clients used
about 4x the server's CPU here, so with them the test measures mostly the clients; --client http measures the
server.

With --mixed, one more client denoises a --bm3d-size photo (1000x1000: 1 Mpx) and asks for BM3D on it
(/denoise_bm3d, the web page's second step, in its own queue) in a loop, while the others send only /classify,
/upscale and /generate: no request of theirs may wait more than MAX_WAIT_S behind that baseline (exit 1 if one
does).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks._measure import TARGETS, TODAY_LOAD_RPS  # noqa: E402  (benchmarks/ is no package for a script)
ENDPOINTS = ("/classify", "/generate", "/upscale", "/inpaint", "/denoise")
MIXED = ("/classify", "/upscale", "/generate")  # the other users' endpoints beside the BM3D user (--mixed)
BM3D = ("/denoise", "/denoise_bm3d")  # the BM3D user: one /denoise, then BM3D on it again and again (one session)
MAX_WAIT_S = 5.0  # --mixed: the most any other request may take while BM3D runs
TASKS = {"image-classification": "classify", "image-generation": "generate", "super-resolution": "sr",
         "inpainting": "inpaint", "denoising": "denoise"}
STARTUP_TIMEOUT = 180  # seconds for `python app.py` to import torch and gradio and answer on its port
SAMPLE_EVERY = 0.2  # seconds between RSS samples of the server


# ----------------------------------------------------------------------------------------------- setup
def pick_models(weights: Path) -> dict[str, tuple[str, dict]]:
    """{tab: (folder name, config)}: the first model folder of each task, as the app's dropdowns would show."""
    found: dict[str, tuple[str, dict]] = {}
    for path in sorted(weights.glob("*/config.json")):
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        tab = TASKS.get(config.get("task") if isinstance(config, dict) else None)
        if tab and tab not in found:
            found[tab] = (path.parent.name, config)
    missing = sorted(set(TASKS.values()) - set(found))
    if missing:
        raise SystemExit(f"error: {weights} has no model folder for {', '.join(missing)}; the load test needs one "
                         f"of each task (see `python -m cnnimg_hub list`)")
    return found


def make_inputs(folder: Path, size: int) -> tuple[Path, Path]:
    """A smooth RGB test image and an editor layer with one brush stroke (the hole), `size` px square."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(2, size // 8), max(2, size // 8), 3), dtype=np.uint8)
    image = folder / "image.png"
    Image.fromarray(small).resize((size, size), Image.BICUBIC).save(image)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((size // 4, size // 4, size // 2, size // 2), fill=(255, 0, 255, 255))
    mask = folder / "stroke.png"
    layer.save(mask)
    return image, mask


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(weights: Path, port: int, device: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                                 "--weights", str(weights), "--device", device], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_until_up(proc: subprocess.Popen, url: str, timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer on {url} within {timeout:g} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class RssSampler(threading.Thread):
    """Peak resident memory of a process and its children, sampled every SAMPLE_EVERY seconds."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                procs = [self.process] + self.process.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            self.done.wait(SAMPLE_EVERY)


# ----------------------------------------------------------------------------------------------- load
def request_args(endpoint: str, models: dict, image: Path, mask: Path, seed: int) -> tuple:
    if endpoint == "/denoise_bm3d":
        return (True,)  # run BM3D on the session's last /denoise
    """The inputs of one request to `endpoint`, in the order of the app's event inputs."""
    from gradio_client import handle_file

    if endpoint == "/classify":
        return handle_file(str(image)), models["classify"][0], ""
    if endpoint == "/generate":
        return models["generate"][0], "", "0", seed, 2
    if endpoint == "/upscale":
        return handle_file(str(image)), int(models["sr"][1].get("scale", 4)), models["sr"][0], "", False, "pil-bicubic"
    if endpoint == "/inpaint":
        editor = {"background": handle_file(str(image)), "layers": [handle_file(str(mask))], "composite": None}
        return editor, None, 0, False, models["inpaint"][0], ""
    return handle_file(str(image)), 15, False, False, models["denoise"][0], ""


class Load:
    """Shared state of the client threads: the request budget and every (endpoint, seconds, error)."""

    def __init__(self, deadline: float, max_requests: int):
        self.deadline, self.max_requests, self.sent = deadline, max_requests, 0
        self.results: list[tuple[str, float, str | None]] = []
        self.bm3d_from: float | None = None  # --mixed: when the BM3D user's first BM3D started
        self.others: list[tuple[float, float]] = []  # --mixed: (start, seconds) of the other users' requests
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if time.monotonic() >= self.deadline or self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.results.append((endpoint, seconds, error))


def one_request(client, endpoint: str, args: tuple, timeout: float) -> str | None:
    try:
        client.submit(*args, api_name=endpoint).result(timeout=timeout)
        return None
    except Exception as e:  # noqa: BLE001  (any failure is an error to count and show)
        return f"{type(e).__name__}: {e}"[:300]


class HttpClient:
    """One user of Gradio's REST API without gradio_client: `submit(*args, api_name=...)` uploads the local files
    among the args (the `handle_file` dicts), POSTs /gradio_api/call/<name>, reads the event stream up to its
    `complete` (or `error`) event and downloads every file of the result, then returns itself; `result()` is a
    no-op so `one_request` treats both clients alike."""

    def __init__(self, url: str, timeout: float = 120):
        import httpx  # noqa: PLC0415  (a dependency of gradio)

        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)

    def _uploaded(self, value):
        if isinstance(value, dict) and value.get("meta", {}).get("_type") == "gradio.FileData":
            path = Path(value["path"])
            with open(path, "rb") as f:
                r = self.http.post(f"{self.url}/gradio_api/upload", files={"files": (path.name, f)})
            r.raise_for_status()
            return {**value, "path": r.json()[0], "orig_name": path.name}
        if isinstance(value, dict):
            return {k: self._uploaded(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._uploaded(v) for v in value]
        return value

    def _download(self, value) -> None:
        if isinstance(value, dict) and value.get("url"):
            self.http.get(value["url"]).raise_for_status()
        elif isinstance(value, dict):
            for v in value.values():
                self._download(v)
        elif isinstance(value, list):
            for v in value:
                self._download(v)

    def submit(self, *args, api_name: str) -> "HttpClient":
        r = self.http.post(f"{self.url}/gradio_api/call{api_name}", json={"data": self._uploaded(list(args))})
        r.raise_for_status()
        event, data = None, None
        with self.http.stream("GET", f"{self.url}/gradio_api/call{api_name}/{r.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    data = json.loads(line[5:])
                    break
        if event != "complete":
            raise RuntimeError(f"{api_name}: {event or 'no result'}: {data}")
        self._download(data)
        return self

    def result(self, timeout: float | None = None) -> None:
        return None


def client_loop(index: int, url: str, load: Load, models: dict, image: Path, mask: Path, timeout: float,
                endpoints: tuple[str, ...] = ENDPOINTS, kind: str = "gradio") -> None:
    from gradio_client import Client

    try:
        client = HttpClient(url, timeout) if kind == "http" else Client(url, verbose=False)
    except Exception as e:  # noqa: BLE001
        load.record("(connect)", 0.0, f"{type(e).__name__}: {e}"[:300])
        return
    i = index  # clients start on different endpoints, so every tab is busy from the first second
    while load.take():
        endpoint = BM3D[min(i, 1)] if endpoints is BM3D else endpoints[i % len(endpoints)]
        if endpoint == "/denoise_bm3d" and load.bm3d_from is None:
            load.bm3d_from = time.monotonic()
        start, began = time.perf_counter(), time.monotonic()
        error = one_request(client, endpoint, request_args(endpoint, models, image, mask, i), timeout)
        load.record(endpoint, time.perf_counter() - start, error)
        if endpoint in MIXED and error is None:
            load.others.append((began, time.perf_counter() - start))
        i += 1


# ----------------------------------------------------------------------------------------------- report
def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of `process` and its children so far."""
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def report(results: list[tuple[str, float, str | None]], seconds: float, peak_rss: int, clients: int,
           kind: str = "gradio", cpu: tuple[float, float] | None = None) -> str:
    def row(name: str, rows: list) -> str:
        ok = np.array([s for _, s, e in rows if e is None]) * 1000
        errors = sum(e is not None for _, _, e in rows)
        p50, p95 = (f"{np.percentile(ok, 50):.0f}", f"{np.percentile(ok, 95):.0f}") if len(ok) else ("-", "-")
        return f"| {name} | {len(rows)} | {errors} | {len(rows) / seconds:.2f} | {p50} | {p95} |"

    by_endpoint = defaultdict(list)
    for r in results:
        by_endpoint[r[0]].append(r)
    lines = [f"Load test: {clients} clients ({'gradio_client' if kind == 'gradio' else 'plain HTTP'}) for "
             f"{seconds:.1f} s", "",
             "| endpoint | requests | errors | requests/s | p50 (ms) | p95 (ms) |", "|---|---|---|---|---|---|"]
    lines += [row(name, by_endpoint[name]) for name in [*ENDPOINTS, "/denoise_bm3d", "(connect)"] if by_endpoint[name]]
    lines += [row("overall", results), ""]
    errors = [e for _, _, e in results if e is not None]
    lines += [f"errors: {len(errors)}", f"peak server RSS: {peak_rss / 2 ** 20:.0f} MiB"]
    if cpu is not None and results:
        server, client = cpu
        lines += [f"CPU time: server {server:.1f} s ({1000 * server / len(results):.0f} ms per request), clients "
                  f"{client:.1f} s ({1000 * client / len(results):.0f} ms per request), in {seconds:.1f} s on "
                  f"{os.cpu_count()} cores"]
    lines += [f"  {e}" for e in sorted(set(errors))[:10]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="weights", help="folder of model folders, one per task (default "
                                                             "weights)")
    parser.add_argument("--clients", type=int, default=16, help="parallel users (default 16)")
    parser.add_argument("--client", choices=["gradio", "http"], default="gradio",
                        help="gradio: each user a gradio_client.Client (default); http: Gradio's REST API over plain "
                             "HTTP, so the clients' own CPU cost does not crowd out the server's (--mixed always "
                             "uses gradio_client: its BM3D user needs a session)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to send requests (default 60)")
    parser.add_argument("--max-requests", type=int, default=2000, help="stop after this many (default 2000)")
    parser.add_argument("--port", type=int, default=0, help="port for the app (default: a free one)")
    parser.add_argument("--size", type=int, default=48, help="side of the test images in pixels (default 48)")
    parser.add_argument("--device", default="auto", help="the app's --device (default auto)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one request may take (default 120; "
                                                                     "600 with --mixed: BM3D on 1 Mpx takes minutes "
                                                                     "on a busy 2-core CPU)")
    parser.add_argument("--mixed", action="store_true", help="one client runs BM3D on a big photo in a loop, the "
                                                              "others classify, upscale and generate")
    parser.add_argument("--bm3d-size", type=int, default=1000, help="--mixed: side of the BM3D photo (default 1000)")
    args = parser.parse_args(argv)
    args.timeout = args.timeout or (600 if args.mixed else 120)
    weights = Path(args.weights).resolve()
    models = pick_models(weights)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="cnnimg-load-") as tmp:
        image, mask = make_inputs(Path(tmp), args.size)
        log = Path(tmp) / "app.log"
        proc = start_server(weights, port, args.device, log)
        sampler = None
        try:
            try:
                wait_until_up(proc, url, STARTUP_TIMEOUT)
            except RuntimeError as e:
                print(f"error: {e}\n{log.read_text()[-3000:]}", file=sys.stderr)
                return 2
            sampler = RssSampler(proc.pid)
            sampler.start()
            start = time.monotonic()
            load = Load(start + args.seconds, args.max_requests)
            endpoints = MIXED if args.mixed else ENDPOINTS
            kind = "gradio" if args.mixed else args.client
            threads = [threading.Thread(target=client_loop, args=(i, url, load, models, image, mask, args.timeout,
                                                                  endpoints, kind), daemon=True)
                       for i in range(args.clients)]
            cpu_before = (cpu_seconds(psutil.Process(proc.pid)), cpu_seconds(psutil.Process()))
            if args.mixed:
                (Path(tmp) / "big").mkdir()
                big, _ = make_inputs(Path(tmp) / "big", args.bm3d_size)
                threads.append(threading.Thread(target=client_loop, args=(0, url, load, models, big, mask,
                                                                          args.timeout, BM3D), daemon=True))
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.seconds + args.timeout + 30)
            elapsed = time.monotonic() - start
            cpu = [after - before for after, before in zip((cpu_seconds(psutil.Process(proc.pid)),
                                                             cpu_seconds(psutil.Process())), cpu_before)]
        finally:
            if sampler is not None:
                sampler.done.set()
            stop_server(proc)
        print(report(load.results, elapsed, sampler.peak, args.clients, kind, cpu))
        errors = sum(e is not None for _, _, e in load.results)
        if not args.mixed and (args.clients, args.size) == (16, 48):  # the target's setting
            rps = len(load.results) / elapsed
            ok = rps >= 3 * TODAY_LOAD_RPS and errors == 0
            print(f"target: {TARGETS['load_test_3x']}: {'PASS' if ok else 'MISS'} ({rps:.2f} requests/s, "
                  f"{rps / TODAY_LOAD_RPS:.1f}x, {errors} errors, {kind} clients)")
        if args.mixed:
            after = load.bm3d_from if load.bm3d_from is not None else float("inf")
            slowest = max((t for began, t in load.others if began >= after), default=0.0)
            bm3d = sum(name == "/denoise_bm3d" and e is None for name, _, e in load.results)
            ok = slowest <= MAX_WAIT_S and bm3d > 0
            print(f"\nmixed: {bm3d} BM3D runs on {args.bm3d_size}x{args.bm3d_size}; slowest other request "
                  f"while BM3D ran: {slowest:.1f} s (limit {MAX_WAIT_S:g} s): {'OK' if ok else 'FAIL'}")
            errors += not ok
        if errors or not load.results:
            print(f"\nserver log (last lines):\n{log.read_text()[-2000:]}", file=sys.stderr)
        return 1 if errors or not load.results else 0


if __name__ == "__main__":
    sys.exit(main())
