"""The Gradio app: every handler in-process, every API endpoint through gradio_client against the real server,
a Hub repo id served by the local test Hub, and `--share` without internet.

Tiny untrained models are written to a temp weights folder (the app reads its model lists from there), so these
tests do not depend on trained weights. Images are small so BM3D and friends stay fast on a shared CPU.
"""
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="cnnimg-gradio-"))

import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import cnnimg_hub  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import app  # noqa: E402

# folder name -> (registered model, small arguments); folder names as the shipped weights
TINY_MODELS = {
    "classify-cifar10": ("classifier-cifar10", dict(widths=[8, 16])),
    "classify-fashion-mnist": ("classifier-fashion-mnist", dict(widths=[8, 16])),
    "generate-fashion-mnist-gan": ("generator-dcgan", dict(base_channels=8)),
    "generate-fashion-mnist-vae": ("generator-vae", dict(base_channels=8)),
    "sr-x2": ("sr-espcn", dict(scale=2, n_feats=8, n_layers=1)),
    "sr-x4": ("sr-espcn", dict(scale=4, n_feats=8, n_layers=1)),
    "inpaint": ("inpaint-gated-unet", dict(base_channels=8)),
    "denoise": ("denoise-ffdnet-small", dict(n_feats=8, n_layers=3)),
}


def make_weights(folder: Path) -> Path:
    for name, (model_name, kwargs) in TINY_MODELS.items():
        cnnimg_hub.save_model(cnnimg_hub.create_model(model_name, **kwargs), folder / name)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def store(weights):
    return app.ModelStore(weights, "cpu")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A small crop of an example photo (BM3D and NLM stay well under a second on it)."""
    path = tmp_path_factory.mktemp("images") / "photo.png"
    Image.open(app.EXAMPLES_DIR / "astronaut.jpg").convert("RGB").resize((96, 72), Image.LANCZOS).save(path)
    return path


@pytest.fixture(scope="module")
def bad_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "not-an-image.png"
    path.write_text("this is text, not a PNG")
    return path


def stroke_layer(size, box=(20, 20, 60, 40)) -> Image.Image:
    """An RGBA editor layer: transparent, with one opaque brush stroke (the hole)."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(box, fill=(255, 0, 255, 255))
    return layer


# ------------------------------------------------------------------------------------------- the model lists
def test_model_lists_come_from_the_configs(store):
    assert store.names("image-classification") == ["classify-cifar10", "classify-fashion-mnist"]
    assert store.names("super-resolution", scale=4) == ["sr-x4"]
    assert store.names("super-resolution", scale=3) == []
    assert app.sr_scale_changed(store, 2)["choices"] == [(app.describe("sr-x2", store.shipped["sr-x2"]), "sr-x2")]
    assert len(app.EXAMPLES) >= 3 and all(max(Image.open(p).size) <= 512 for p in app.EXAMPLES)


# ------------------------------------------------------------------------------------------- in-process handlers
def test_classify_handler(store, photo):
    labels, preview, prep, info = app.classify_image(store, str(photo), "classify-fashion-mnist", "")
    assert len(labels) == 5 and set(labels) <= set(cnnimg_hub.models.classifier.FASHION_MNIST_LABELS)
    assert abs(sum(labels.values()) - 1) < 0.5 and preview.size == (28, 28) and preview.mode == "L"
    assert "28" in prep and "center crop" in prep and "cpu" in info.lower()


def test_generate_and_interpolate_handlers(store):
    a, _ = app.generate_images(store, "generate-fashion-mnist-gan", "", "Trouser", 7, 5)
    b, _ = app.generate_images(store, "generate-fashion-mnist-gan", "", "Trouser", 7, 5)
    c, _ = app.generate_images(store, "generate-fashion-mnist-gan", "", "Trouser", 8, 5)
    assert len(a) == 5 and a[0].size == (28, 28)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))  # same seed, same images
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, c))
    strip, _ = app.interpolate_images(store, "generate-fashion-mnist-vae", "", "Bag", 1, 2, 6)
    assert len(strip) == 6
    classes, interp_row = app.generator_changed(store, "generate-fashion-mnist-vae", "")
    assert classes["choices"][1] == "Trouser" and interp_row["visible"] is True
    assert app.generator_changed(store, "generate-fashion-mnist-gan", "")[1]["visible"] is False
    with pytest.raises(gr.Error, match="not a class"):
        app.generate_images(store, "generate-fashion-mnist-gan", "", "airplane", 0, 1)


def test_compile_option_serves_compiled_models(weights, photo):
    compiled = app.ModelStore(weights, "cpu", compile=True)
    model = compiled.get(app.TASKS["sr"], "sr-x2")
    assert isinstance(model, torch._dynamo.eval_frame.OptimizedModule) and model.config["scale"] == 2
    (_, a), *_ = app.upscale_image(compiled, str(photo), 2, "sr-x2", "", False)
    (_, b), *_ = app.upscale_image(app.ModelStore(weights, "cpu"), str(photo), 2, "sr-x2", "", False)
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1


def test_upscale_handler_and_degrade_then_restore(store, photo):
    (before, after), bicubic, png, table, info = app.upscale_image(store, str(photo), 4, "sr-x4", "", False)
    assert before.size == after.size == bicubic.size == (384, 288) and Image.open(png).size == (384, 288)
    assert "PSNR" not in table and "x4" in info
    # one PNG encoding per result: the slider's CNN image is the download file, in Gradio's cache folder
    assert app.png_file(after) == png and Path(png).parent == Path(app.get_upload_folder()) / "cnnimg"
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(after))
    (before, after), bicubic, png, table, info = app.upscale_image(store, str(photo), 2, "sr-x2", "", True)
    assert after.size == (96, 72)  # downscaled by 2 first, then restored to the upload's size
    psnrs = [float(v) for v in re.findall(r"\| ([\d.]+) \| [\d.]+ \|", table)]
    assert len(psnrs) == 2 and all(20 < p < 60 for p in psnrs) and "Y channel, 2 px border" in table


def test_inpaint_handler_drawn_mask_uploaded_mask_and_random_holes(store, photo, tmp_path):
    bg = Image.open(photo)
    # the editor's layer at canvas resolution (here 2x): resized to the background with nearest
    editor = {"background": bg, "layers": [stroke_layer((192, 144), (40, 40, 120, 80))], "composite": None}
    holed, result, telea, table, info = app.inpaint_image(store, editor, None, None, 0, False, "inpaint", "")
    assert result.size == telea.size == bg.size and "PSNR" not in table
    assert "%" in info and np.array_equal(np.asarray(result)[0:15], np.asarray(bg)[0:15])  # known rows kept
    mask_path = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((10, 10), 255, np.uint8), ((30, 32), (40, 46)))).save(mask_path)
    editor = {"background": bg, "layers": [], "composite": None}
    _, result, _, _, _ = app.inpaint_image(store, editor, None, str(mask_path), 2, False, "inpaint", "")
    assert result.size == bg.size
    holed, result, telea, table, _ = app.inpaint_image(store, editor, None, None, 0, True, "inpaint", "")
    assert len(re.findall(r"\| [\d.]+ \| [\d.]+ \|", table)) == 2  # PSNR/SSIM of CNN and Telea
    with pytest.raises(gr.Error, match="Draw over"):
        app.inpaint_image(store, editor, None, None, 0, False, "inpaint", "")


def test_inpaint_uses_the_remembered_full_resolution_upload(store, photo):
    full = Image.open(photo)
    small = full.resize((48, 36))  # what a downscaling editor would send as background
    editor = {"background": small, "layers": [stroke_layer((48, 36), (10, 10, 20, 20))], "composite": None}
    _, result, telea, _, _ = app.inpaint_image(store, editor, full, None, 0, False, "inpaint", "")
    assert result.size == telea.size == full.size


def test_denoise_handler_with_metrics_and_auto_sigma(store, photo):
    noisy, result, bm3d, nlm, table, info = app.denoise_image(store, str(photo), 25, False, True, "denoise", "")
    assert noisy.size == result.size == bm3d.size == nlm.size == (96, 72)
    assert len(re.findall(r"\| [\d.]+ s \| [\d.]+ \| [\d.]+ \|", table)) == 3 and "sigma 25" in info
    *_, info = app.denoise_image(store, str(photo), 25, True, True, "denoise", "")
    assert "estimated" in info


def test_bm3d_is_skipped_on_big_images(store, photo, monkeypatch):
    monkeypatch.setattr(app, "BM3D_MAX_PIXELS", 1000)
    _, result, bm3d, nlm, table, _ = app.denoise_image(store, str(photo), 10, False, False, "denoise", "")
    assert bm3d is None and nlm is not None and "skipped" in table


def test_bad_uploads_and_wrong_models_become_gr_errors(store, photo, bad_file, weights):
    with pytest.raises(gr.Error, match="not an image") as e:
        app.upscale_image(store, str(bad_file), 4, "sr-x4", "", False)
    assert "not-an-image.png" in e.value.message and str(bad_file.parent) not in e.value.message
    with pytest.raises(gr.Error, match="Upload an image"):
        app.classify_image(store, None, "classify-cifar10", "")
    with pytest.raises(gr.Error, match="not a model folder"):
        app.denoise_image(store, str(photo), 10, False, False, "../denoise", "")
    for not_a_repo in ["not a repo id", str(weights / "sr-x4"), "/etc", "../weights/sr-x4"]:  # server folders too
        with pytest.raises(gr.Error, match="is not a Hub repo id"):
            app.denoise_image(store, str(photo), 10, False, False, "denoise", not_a_repo)


def test_pixel_limit_is_a_clear_error(store, photo, monkeypatch):
    monkeypatch.setattr(app, "MAX_PIXELS", 1000)
    with pytest.raises(gr.Error, match="pixel limit"):
        app.classify_image(store, str(photo), "classify-cifar10", "")


# ------------------------------------------------------------------------------------------- Hub repo ids
def test_hub_repo_id_is_loaded_and_checked_for_its_task(store, photo, weights, hub_server):
    repo = f"tester/tiny-sr-{uuid.uuid4().hex[:8]}"
    cnnimg_hub.push_to_hub(weights / "sr-x2", repo)
    (_, after), *_ , info = app.upscale_image(store, str(photo), 4, "sr-x4", repo, False)
    assert after.size == (192, 144) and "scale radio (4) was not used" in info  # the repo's x2 wins
    (_, again), *_ = app.upscale_image(store, str(photo), 4, "", f"{repo}@main", False)
    assert again.size == (192, 144)
    with pytest.raises(gr.Error, match="'super-resolution' model"):
        app.denoise_image(store, str(photo), 10, False, False, "denoise", repo)
    with pytest.raises(gr.Error, match="was not found"):
        app.classify_image(store, str(photo), "", "tester/no-such-repo-" + uuid.uuid4().hex[:8])


# ------------------------------------------------------------------------------------------- the served API
@pytest.fixture(scope="module")
def client(weights):
    from gradio_client import Client

    demo = app.build_demo(weights, "cpu")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=app.MAX_FILE_SIZE)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_api_lists_exactly_the_model_endpoints(client):
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert endpoints == {"/classify", "/generate", "/interpolate", "/upscale", "/upscale_png", "/inpaint", "/denoise"}


def test_api_classify_generate_interpolate(client, photo):
    from gradio_client import handle_file

    labels, preview, prep, info = client.predict(handle_file(str(photo)), "classify-cifar10", "", api_name="/classify")
    assert len(labels["confidences"]) == 5 and labels["label"] in cnnimg_hub.models.classifier.CIFAR10_LABELS
    assert Image.open(preview).size == (32, 32) and "32" in prep
    gallery, info = client.predict("generate-fashion-mnist-vae", "", "Sneaker", 3, 4, api_name="/generate")
    assert len(gallery) == 4 and Image.open(gallery[0]["image"]).size == (28, 28)
    strip, _ = client.predict("generate-fashion-mnist-vae", "", "Sneaker", 3, 4, 5, api_name="/interpolate")
    assert len(strip) == 5


def test_api_upscale_inpaint_denoise(client, weights, photo, tmp_path):
    from gradio_client import handle_file

    slider, bicubic, png, table, info = client.predict(handle_file(str(photo)), 2, "sr-x2", "", False,
                                                       api_name="/upscale")
    assert [Image.open(p).size for p in slider] == [(192, 144)] * 2
    assert Image.open(bicubic).size == Image.open(png).size == (192, 144)
    assert Path(slider[1]).name == Path(png).name  # the same file (one encoding) behind the slider and the download
    alone = client.predict(handle_file(str(photo)), "sr-x4", "", api_name="/upscale_png")  # the lean endpoint
    want, _ = cnnimg_hub.pipelines.upscale(cnnimg_hub.load_model(weights / "sr-x4"), Image.open(photo))
    assert np.array_equal(np.asarray(Image.open(alone)), np.asarray(want))
    with pytest.raises(Exception, match="not a model folder"):
        client.predict(handle_file(str(photo)), "sr-x9", "", api_name="/upscale_png")
    mask = tmp_path / "stroke.png"
    stroke_layer((96, 72)).save(mask)
    editor = {"background": handle_file(str(photo)), "layers": [handle_file(str(mask))], "composite": None}
    holed, result, telea, table, info = client.predict(editor, None, 0, True, "inpaint", "", api_name="/inpaint")
    assert Image.open(result).size == Image.open(telea).size == (96, 72) and "PSNR" in table
    noisy, result, bm3d, nlm, table, info = client.predict(handle_file(str(photo)), 15, False, True, "denoise", "",
                                                           api_name="/denoise")
    assert Image.open(result).size == (96, 72) and table.count(" s |") == 3


def test_api_bad_upload_is_a_readable_error(client, bad_file):
    from gradio_client import handle_file

    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(str(bad_file)), "classify-cifar10", "", api_name="/classify")


# ------------------------------------------------------------------------------------------- --share offline
def test_share_without_internet_says_so_and_keeps_serving(weights):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--share", "--port", str(port), "--device", "cpu",
                             "--weights", str(weights)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
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
        output = "".join(lines)
        assert ok, output
        assert f"127.0.0.1:{port}" in output
    finally:
        proc.kill()
        proc.wait(timeout=10)
