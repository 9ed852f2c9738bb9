"""The Gradio app: every tab's handlers in-process, every API endpoint through gradio_client against the real
server, a slow baseline that must not hold anyone else's request, the MCP tools through a real MCP client, a Hub
repo id served by the local test Hub, and `--share` without internet.

Tiny untrained models (conftest.TINY_APP_MODELS) keep it fast; images are small so BM3D stays fast too.
"""
import os
import tempfile

os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="cnnimg-gradio-"))
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="cnnimg-examples-"))

import asyncio  # noqa: E402
import base64  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import app  # noqa: E402
import cnnimg_hub  # noqa: E402
from cnnimg_hub import compare, degrade  # noqa: E402
from tabs import common  # noqa: E402
from benchmarks.load_test import wait_until_up  # noqa: E402  (the benchmark's readiness check)

ROOT = Path(app.__file__).resolve().parent


@pytest.fixture(scope="module")
def demo(tiny_weights):
    return app.build_demo(tiny_weights, "cpu")


@pytest.fixture(scope="module")
def fn(demo, endpoints):
    return endpoints(demo)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A small crop of an example photo (BM3D and NLM stay well under a second on it)."""
    path = tmp_path_factory.mktemp("images") / "photo.png"
    Image.open(common.EXAMPLES_DIR / "astronaut.jpg").convert("RGB").resize((96, 72), Image.LANCZOS).save(path)
    return path


@pytest.fixture(scope="module")
def rgba_photo(photo, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "rgba.png"
    image = Image.open(photo).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    image.save(path)
    return path


def stroke_layer(size, box=(20, 20, 60, 40)) -> Image.Image:
    """An RGBA editor layer: transparent, with one opaque brush stroke (the hole)."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(box, fill=(255, 0, 255, 255))
    return layer


def psnr_rows(table: str) -> list[float]:
    return [float(v) for v in re.findall(r"\| ([\d.]+) \| [\d.]+ \|$", table, flags=re.M)]


# ------------------------------------------------------------------------------------------- structure
def test_app_py_only_assembles_tabs_and_each_tab_is_small():
    assert len((ROOT / "app.py").read_text().splitlines()) < 100
    for tab in app.TABS:
        assert len(Path(tab.__file__).read_text().splitlines()) < 150, tab.__name__
    text = "".join(Path(t.__file__).read_text() for t in app.TABS)
    for rule in ("maximum_filter", "add_noise", "downscale(", "estimate_sigma", "random_mask", "psnr("):
        assert rule not in text, f"{rule} belongs in the package (compare, pipelines), not in a tab"


def test_model_lists_and_scales_come_from_the_configs(demo):
    store = demo.store
    assert store.names("image-classification") == ["classify-cifar10", "classify-fashion-mnist"]
    assert store.names("super-resolution", scale=4) == ["sr-x4"]
    radio = next(b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "Scale")
    assert [c[1] for c in radio.choices] == [2, 4]  # no x3 model ships, so no x3 choice


# ------------------------------------------------------------------------------------------- in-process handlers
def test_classify_shows_what_the_model_sees(fn, photo):
    labels, seen, prep, info = fn["classify"](str(photo), "classify-fashion-mnist", "")
    assert len(labels) == 5 and set(labels) <= set(cnnimg_hub.models.classifier.FASHION_MNIST_LABELS)
    assert seen.size == (28, 28) and seen.mode == "L" and "center crop" in prep and "cpu" in info


def test_generate_interpolate_and_a_bad_repo_keeps_the_class_list(fn, demo):
    a, _ = fn["generate"]("generate-fashion-mnist-gan", "", "Trouser", 7, 5)
    b, _ = fn["generate"]("generate-fashion-mnist-gan", "", "Trouser", 7, 5)
    assert len(a) == 5 and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert len(fn["interpolate"]("generate-fashion-mnist-vae", "", "Bag", 1, 2, 6)[0]) == 6
    with pytest.raises(gr.Error, match="not a class"):
        fn["generate"]("generate-fashion-mnist-gan", "", "airplane", 0, 1)
    changed = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "model_changed"
                   and len(f.outputs) == 3)
    classes, row, message = changed("", "not a repo id")
    assert classes == gr.update() and "not a Hub repo id" in message  # the dropdown stays, the reason is shown


def test_cached_signatures_give_gradio_the_same_session_config(demo, monkeypatch):
    import inspect

    import gradio.blocks
    from gradio.state_holder import SessionState

    assert isinstance(gradio.blocks.inspect, common._CachedSignatures)  # build_demo installed it
    common.cache_block_signatures()  # idempotent: still one layer
    assert isinstance(gradio.blocks.inspect, common._CachedSignatures)
    cached = SessionState(demo).config_values
    monkeypatch.setattr(gradio.blocks, "inspect", inspect)
    assert SessionState(demo).config_values == cached and len(cached) > 50

    sigs = common._CachedSignatures()
    assert sigs.signature(gr.Image.__init__) is sigs.signature(gr.Image.__init__)  # computed once
    assert sigs.signature(len) == inspect.signature(len) and sigs.isfunction is inspect.isfunction

    class Unhashable:
        __hash__ = None

        def __call__(self, a, b=1):
            pass

    assert str(sigs.signature(Unhashable())) == "(a, b=1)"
    with pytest.raises(TypeError):
        sigs.signature(3)


def test_micro_batcher_runs_waiting_requests_together_and_isolates_a_failure():
    batcher, sizes = common.MicroBatcher(max_batch=8), []
    started, release = threading.Event(), threading.Event()

    def run(items):
        sizes.append(len(items))
        if len(sizes) == 1:  # the first call holds the model while the others arrive
            started.set()
            release.wait(10)
        if -1 in items:
            raise ValueError("a bad request")
        return [i * 2 for i in items]

    results = {}

    def call(i):
        try:
            results[i] = batcher("model", run, i)
        except ValueError as e:
            results[i] = str(e)

    threads = [threading.Thread(target=call, args=(1,))]
    threads[0].start()
    assert started.wait(10)
    threads += [threading.Thread(target=call, args=(i,)) for i in (2, 3, -1)]
    for t in threads[1:]:
        t.start()
    while len(batcher._waiting) < 3:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(10)
    assert sizes == [1, 3, 1, 1, 1]  # alone, then the three waiting in one call; it failed, so each alone
    assert results == {1: 2, 2: 4, 3: 6, -1: "a bad request"}


@pytest.mark.parametrize("endpoint", ["classify", "generate"])
def test_batched_requests_get_the_results_of_single_calls(fn, photo, tmp_path, endpoint):
    paths = []
    for i, box in enumerate([(0, 0, 96, 72), (10, 5, 60, 50), (30, 20, 96, 72), (0, 30, 40, 72)]):
        paths.append(tmp_path / f"{i}.png")
        Image.open(photo).crop(box).save(paths[-1])
    calls = {"classify": [(str(p), "classify-cifar10", "") for p in paths],
             "generate": [("generate-fashion-mnist-gan", "", c, seed, n) for c, seed, n in
                          [("Trouser", 7, 5), ("Bag", 7, 2), ("Trouser", 8, 1), ("Sneaker", 0, 3)]]}[endpoint]
    alone = [fn[endpoint](*args) for args in calls]
    before, results = common.BATCHER.calls, {}
    with common.BATCHER._running:  # the model is busy: all four requests wait, then go in one call
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, fn[endpoint](*calls[i])))
                   for i in range(len(calls))]
        for t in threads:
            t.start()
        while len(common.BATCHER._waiting) < len(calls):
            time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert common.BATCHER.calls == before + 1
    for i, want in enumerate(alone):
        got = results[i]
        if endpoint == "classify":
            assert list(got[0]) == list(want[0]) and np.allclose(list(got[0].values()), list(want[0].values()),
                                                                 atol=1e-5)
            assert np.array_equal(np.asarray(got[1]), np.asarray(want[1]))  # the image the model saw
        else:
            assert len(got[0]) == len(want[0]) and all(
                np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1 for a, b in zip(got[0], want[0]))


def test_the_precision_setting_reaches_every_model(tiny_weights, photo, endpoints):
    fn = endpoints(app.build_demo(tiny_weights, "cpu", precision="bf16"))
    assert "bfloat16" in fn["classify"](str(photo), "classify-cifar10", "")[3]
    assert "bfloat16" in fn["generate"]("generate-fashion-mnist-vae", "", "Bag", 1, 2)[1]
    assert "bfloat16" in fn["upscale"](str(photo), 2, "sr-x2", "", False)[5]
    assert "bfloat16" in fn["denoise"](str(photo), 15, False, False, "denoise", "")[5]
    with pytest.raises(cnnimg_hub.errors.CnnImgError, match="precision must be"):
        common.ModelStore(tiny_weights, "cpu", precision="int8")


def test_upscale_cnn_first_then_bicubic_and_degrade_then_restore(fn, photo):
    pair, against, gallery, png, table, info, c = fn["upscale"](str(photo), 4, "sr-x4", "", False)
    assert pair[0].size == pair[1].size == (384, 288) and Image.open(png).size == (384, 288)
    assert "PSNR" not in table and "x4" in info and "bicubic" not in table
    pair, against, gallery, png, table, info, c = fn["upscale_bicubic"](c)
    assert against["value"] == "PIL bicubic" and "PIL bicubic" in table and len(gallery) == 3
    assert np.array_equal(np.asarray(pair[0]), np.asarray(Image.open(photo).resize((384, 288), Image.BICUBIC)))
    *_, table, _, c = fn["upscale_bicubic"](fn["upscale"](str(photo), 2, "sr-x2", "", True)[-1])
    assert c.cnn.image.size == (96, 72) and len(psnr_rows(table)) == 2 and "Y channel, 2 px border" in table
    assert "PIL bicubic (antialiased)" in fn["upscale"](str(photo), 2, "sr-x2", "", True)[5]  # the default
    *_, table, info, c = fn["upscale"](str(photo), 2, "sr-x2", "", True, "cv2-cubic")
    assert "OpenCV cubic" in info and c.used["downsampler"] == "cv2-cubic"
    lr = np.asarray(Image.open(photo).convert("RGB").crop((0, 0, 96, 72)))
    assert np.array_equal(np.asarray(c.input), degrade.downsample(lr, 2, "cv2-cubic"))
    with pytest.raises(gr.Error, match="Unknown downsampler .nearest."):
        fn["upscale"](str(photo), 2, "sr-x2", "", True, "nearest")


def test_transparency_is_kept_on_every_restoration_tab(fn, rgba_photo):
    alpha = np.asarray(Image.open(rgba_photo).getchannel("A"))
    c = fn["upscale"](str(rgba_photo), 2, "sr-x2", "", False)[-1]
    assert c.cnn.image.mode == "RGBA" and c.cnn.image.size == (192, 144)
    c = fn["denoise"](str(rgba_photo), 10, False, False, "denoise", "")[-1]
    assert c.cnn.image.mode == "RGBA" and np.array_equal(np.asarray(c.cnn.image.getchannel("A")), alpha)
    nlm = fn["denoise_nlm"](c)[-1].methods[-1].image
    assert nlm.mode == "RGBA" and np.array_equal(np.asarray(nlm.getchannel("A")), alpha)
    editor = {"background": str(rgba_photo), "layers": [stroke_layer((96, 72))], "composite": None}
    c = fn["inpaint_telea"](fn["inpaint"](editor, None, None, 0, False, "inpaint", "")[-1])[-1]
    assert [m.image.mode for m in c.methods] == ["RGBA", "RGBA"]


def test_denoise_uses_one_sigma_for_the_cnn_and_the_baselines(fn, photo):
    *_, table, info, c = fn["denoise"](str(photo), 25, True, True, "denoise", "")
    assert "estimated" in info and c.used["sigma"] == c.info.used["sigma"] <= 75
    c = fn["denoise_nlm"](c)[-1]
    *_, table, _, c = fn["denoise_bm3d"](c, True)
    assert [m.name for m in c.methods] == ["CNN (denoise-ffdnet-small)", "OpenCV non-local means", "BM3D"]
    assert len(psnr_rows(table)) == 3
    *_, table, _, c = fn["denoise_bm3d"](c, False)  # BM3D is opt-in
    assert "not run" in table and c.methods[-1].image is None


def test_bm3d_is_skipped_on_big_images_with_the_reason(fn, photo, monkeypatch):
    monkeypatch.setattr(compare, "BM3D_MAX_PIXELS", 1000)
    *_, table, _, c = fn["denoise_bm3d"](fn["denoise"](str(photo), 10, False, False, "denoise", "")[-1], True)
    assert "over 0.001 megapixel" in table and "crop it" in table


def test_inpaint_strokes_and_an_uploaded_mask_both_count(fn, photo, tmp_path):
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((10, 10), 255, np.uint8), ((50, 12), (70, 16)))).save(mask)
    editor = {"background": str(photo), "layers": [stroke_layer((192, 144), (20, 20, 60, 40))], "composite": None}
    c = fn["inpaint"](editor, None, str(mask), 0, False, "inpaint", "")[-1]
    holes = np.asarray(c.used["mask"]) > 127
    assert holes[55, 75] and holes[15, 15] and not holes[0, 0]  # the upload and the (canvas-scaled) stroke
    assert np.array_equal(np.asarray(c.cnn.image)[0:5], np.asarray(Image.open(photo))[0:5])  # known rows kept
    *_, table, _, c = fn["inpaint"]({**editor, "layers": []}, None, None, 0, True, "inpaint", "")
    assert len(psnr_rows(table)) == 1  # random holes, measured
    with pytest.raises(gr.Error, match="Nothing to fill"):
        fn["inpaint"]({**editor, "layers": []}, None, None, 0, False, "inpaint", "")


# ------------------------------------------------------------------------------------------- errors
def test_errors_are_sentences_and_one_log_line(fn, photo, tmp_path, weights_too_big_photo, caplog):
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a PNG")
    with caplog.at_level(logging.WARNING, logger="cnnimg_hub.app"):
        with pytest.raises(gr.Error, match="not an image") as e:
            fn["upscale"](str(bad), 4, "sr-x4", "", False)
    assert "notes.png" in e.value.message and str(tmp_path) not in e.value.message
    assert e.value.print_exception is False and len(caplog.records) == 1 and "\n" not in caplog.records[0].message
    with pytest.raises(gr.Error, match=r"big.png is 2100x2000 pixels, over this demo's 4 megapixel limit: shrink") as e:
        fn["classify"](str(weights_too_big_photo), "classify-cifar10", "")
    assert "max_pixels" not in e.value.message
    with pytest.raises(gr.Error, match="Upload an image"):
        fn["classify"](None, "classify-cifar10", "")
    with pytest.raises(gr.Error, match="removes noise up to sigma 75: lower the noise level, or tick Auto"):
        fn["denoise"](str(photo), 80, False, False, "denoise", "")
    for not_a_repo in ["not a repo id", "/etc", "../weights/sr-x4"]:  # server folders are never loaded
        with pytest.raises(gr.Error, match="is not a Hub repo id"):
            fn["denoise"](str(photo), 10, False, False, "denoise", not_a_repo)
    with pytest.raises(gr.Error, match="not a model folder of this demo"):
        fn["denoise"](str(photo), 10, False, False, "../denoise", "")


@pytest.fixture(scope="module")
def weights_too_big_photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "big.png"
    Image.new("RGB", (2100, 2000)).save(path)
    return path


def test_hub_repo_id_is_loaded_and_checked_for_its_task(fn, photo, tiny_weights, hub_server):
    repo = f"tester/tiny-sr-{uuid.uuid4().hex[:8]}"
    cnnimg_hub.push_to_hub(tiny_weights / "sr-x2", repo)
    *_, info, c = fn["upscale"](str(photo), 4, "sr-x4", repo, False)
    assert c.cnn.image.size == (192, 144) and "scale choice (4) was not used" in info  # the repo's x2 wins
    with pytest.raises(gr.Error, match="'super-resolution' model"):
        fn["denoise"](str(photo), 10, False, False, "denoise", repo)
    with pytest.raises(gr.Error, match="was not found"):
        fn["classify"](str(photo), "", "tester/no-such-repo-" + uuid.uuid4().hex[:8])


def test_gpu_handlers_use_spaces_gpu_when_it_is_importable(tiny_weights, monkeypatch, endpoints):
    wrapped = []
    fake = type(sys)("spaces")
    fake.GPU = lambda f: wrapped.append(f.__name__) or f
    monkeypatch.setitem(sys.modules, "spaces", fake)
    endpoints(app.build_demo(tiny_weights, "cpu"))
    assert {"classify", "generate", "interpolate", "upscale", "upscale_png", "inpaint", "denoise"} <= set(wrapped)
    assert not any(name.startswith("compare_") for name in wrapped)  # the CPU baselines need no GPU


# ------------------------------------------------------------------------------------------- the served API
@pytest.fixture(scope="module")
def server(demo, free_port):
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=common.MAX_FILE_SIZE)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_api_endpoints_and_their_descriptions(server):
    from gradio_client import Client

    api = Client(server, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(api) == {"/classify", "/generate", "/interpolate", "/upscale", "/upscale_png", "/inpaint", "/denoise"}
    assert all(e["description"] for e in api.values())


def test_api_calls_and_the_baselines_in_the_same_session(server, photo, tiny_weights, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    labels, seen, prep, info = client.predict(handle_file(str(photo)), "classify-cifar10", "", api_name="/classify")
    assert len(labels["confidences"]) == 5 and Image.open(seen).size == (32, 32)
    gallery, _ = client.predict("generate-fashion-mnist-vae", "", "Sneaker", 3, 4, api_name="/generate")
    assert len(gallery) == 4 and Image.open(gallery[0]["image"]).size == (28, 28)
    pair, against, gallery, png, table, info = client.predict(handle_file(str(photo)), 2, "sr-x2", "", False,
                                                              api_name="/upscale")
    assert [Image.open(p).size for p in pair] == [(192, 144)] * 2 and Image.open(png).size == (192, 144)
    *_, table, _ = client.predict(api_name="/upscale_bicubic")  # the session's comparison gets its baseline
    assert "PIL bicubic" in table
    *_, info = client.predict(handle_file(str(photo)), 2, "sr-x2", "", True, "cv2-area", api_name="/upscale")
    assert "OpenCV area" in info
    alone = client.predict(handle_file(str(photo)), "sr-x4", "", api_name="/upscale_png")
    want, _ = cnnimg_hub.pipelines.upscale(cnnimg_hub.load_model(tiny_weights / "sr-x4"), Image.open(photo))
    assert np.array_equal(np.asarray(Image.open(alone)), np.asarray(want))
    mask = tmp_path / "stroke.png"
    stroke_layer((96, 72)).save(mask)
    editor = {"background": handle_file(str(photo)), "layers": [handle_file(str(mask))], "composite": None}
    *_, table, info = client.predict(editor, None, 0, True, "inpaint", "", api_name="/inpaint")
    assert "PSNR" in table
    *_, table, info = client.predict(handle_file(str(photo)), 15, False, True, "denoise", "", api_name="/denoise")
    assert "Noise level used: 15.0" in info


def test_a_slow_baseline_does_not_hold_other_users(server, photo, monkeypatch):
    """One user's BM3D (made to take 8 s) runs in its own queue: another user's classify is served meanwhile."""
    from gradio_client import Client, handle_file

    real = compare.classical.bm3d_denoise
    monkeypatch.setattr(compare.classical, "bm3d_denoise", lambda *a: time.sleep(8) or real(*a))
    slow, other = Client(server, verbose=False), Client(server, verbose=False)
    slow.predict(handle_file(str(photo)), 15, False, False, "denoise", "", api_name="/denoise")
    job = slow.submit(True, api_name="/denoise_bm3d")
    time.sleep(1)
    start = time.perf_counter()
    other.predict(handle_file(str(photo)), "classify-cifar10", "", api_name="/classify")
    waited = time.perf_counter() - start
    assert not job.done() and waited < 5, waited
    assert "BM3D" in job.result(timeout=60)[4]


def test_mcp_tools_have_real_names_and_descriptions_and_classify_works(tiny_weights, photo, free_port):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--mcp", "--port", str(port), "--device", "cpu",
                             "--weights", str(tiny_weights)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/", 120)
        image = "data:image/png;base64," + base64.b64encode(Path(photo).read_bytes()).decode()

        async def session():
            async with streamablehttp_client(f"http://127.0.0.1:{port}/gradio_api/mcp/") as (read, write, _):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    tools = {t.name: t for t in (await s.list_tools()).tools}
                    result = await s.call_tool("classify", {"image": image, "model_name": "classify-cifar10",
                                                            "repo": ""})
                    return tools, result

        tools, result = asyncio.run(session())
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert {"classify", "generate", "interpolate", "upscale", "upscale_png", "inpaint", "denoise"} <= set(tools)
    assert not any(name.startswith("partial") for name in tools)
    classify = tools["classify"]
    assert "top-5" in classify.description and "Hub repo id" in classify.inputSchema["properties"]["repo"]["description"]
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert not result.isError and any(label in text for label in cnnimg_hub.models.classifier.CIFAR10_LABELS), text


def test_share_without_internet_says_so_and_keeps_serving(tiny_weights, free_port):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--share", "--port", str(port), "--device", "cpu",
                             "--weights", str(tiny_weights)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        ok, deadline = False, time.time() + 90
        while not ok and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if any("share link could NOT be created" in line for line in lines):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    ok = r.status == 200
        assert ok, "".join(lines)
    finally:
        proc.kill()
        proc.wait(timeout=10)
