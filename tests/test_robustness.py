"""Every kind of bad or odd input, through the three surfaces a public demo has: the pipeline functions, the CLI
(`python -m cnnimg_hub`) and the app (in-process handlers and gradio_client against a launched app). Each must
answer with a clear error naming the problem (CnnImgError / gr.Error / one CLI line) or a valid image -- never a
stack trace, a hang or a huge allocation. Plus property-based tests (hypothesis) over sizes, modes and parameters,
Hub faults (a stalled server, bad repos, path traversal in the repo box).

Tiny untrained models only; test_pipelines.py, test_imageio.py, test_app.py and test_hub.py cover the single-case
behaviour (sizes, alpha, fp16 NaN and CUDA out-of-memory fallbacks, offline cache) that is not repeated here.
"""
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="cnnimg-gradio-"))

import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

import cnnimg_hub  # noqa: E402
from cnnimg_hub import _hub, _runner, pipelines  # noqa: E402
from cnnimg_hub.errors import CnnImgError, HubError, ImageInputError  # noqa: E402
from cnnimg_hub.imageio import MODES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import app  # noqa: E402
import tabs  # noqa: E402
from cnnimg_hub import compare  # noqa: E402

# weights folder name -> (registered model, small arguments): the app's folder names, models that run in ms
TINY_WEIGHTS = {
    "classify-cifar10": ("classifier-cifar10", dict(widths=[8, 8])),
    "generate-fashion-mnist-gan": ("generator-dcgan", dict(base_channels=8)),
    "sr-x2": ("sr-espcn", dict(scale=2, n_feats=8, n_layers=1)),
    "inpaint": ("inpaint-gated-unet", dict(base_channels=4, depth=2, dilations=[1])),  # multiple_of 4
    "denoise": ("denoise-ffdnet-small", dict(n_feats=8, n_layers=3)),  # multiple_of 2
}
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_weights(folder: Path) -> Path:
    torch.manual_seed(0)
    for name, (model_name, kwargs) in TINY_WEIGHTS.items():
        cnnimg_hub.save_model(cnnimg_hub.create_model(model_name, **kwargs), folder / name)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def models(weights):
    return {name: cnnimg_hub.load_model(weights / name) for name in TINY_WEIGHTS}


@pytest.fixture(scope="module")
def sr_models():
    torch.manual_seed(0)
    return {s: cnnimg_hub.create_model("sr-espcn", scale=s, n_feats=8, n_layers=1).eval() for s in (2, 3, 4)}


@pytest.fixture(scope="module")
def fn(weights, endpoints):
    """The app's handlers for these weights, by API name (the tabs build them inside create_tab)."""
    return endpoints(app.build_demo(weights, "cpu"))


# ----------------------------------------------------------------------------------------------- the files
def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def bomb_png(w: int, h: int) -> bytes:
    """A valid 1x1 PNG whose header claims w x h: a few hundred bytes that would decode to w*h*3 bytes."""
    data = bytearray(encode(Image.new("RGB", (1, 1))))
    data[16:24] = struct.pack(">II", w, h)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # its CRC over type + data
    return bytes(data)


def exif_rotated() -> bytes:
    """20x12 pixels stored, EXIF orientation 6 (rotate 90 clockwise to view): upright it is 12x20."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(noise(20, 12), "JPEG", exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 12), c) for c in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


# name -> (bytes, the message fragment that must name the problem)
BAD_FILES = {
    "zero.png": (lambda: b"", "empty"),
    "truncated.png": (lambda: encode(noise(64, 64))[:600], "truncated"),
    "truncated.jpg": (lambda: encode(noise(64, 64), "JPEG")[:400], "truncated"),
    "text.png": (lambda: b"this is text, not a PNG\n" * 4, "not an image"),
    "bomb.png": (lambda: bomb_png(30000, 30000), "decompression bomb"),
    "big-header.png": (lambda: bomb_png(8000, 6000), "pixel limit"),  # under PIL's guard, over ours
}
# name -> (bytes, upright size, mode after open_image)
ODD_FILES = {
    "rgba.png": (lambda: encode(noise(20, 12).convert("RGBA")), (20, 12), "RGBA"),
    "la.png": (lambda: encode(noise(20, 12).convert("LA")), (20, 12), "LA"),
    "palette.png": (lambda: encode(noise(20, 12).convert("P")), (20, 12), "RGB"),
    "cmyk.jpg": (lambda: encode(noise(20, 12).convert("CMYK"), "JPEG"), (20, 12), "RGB"),
    "16bit.png": (lambda: encode(Image.fromarray(np.arange(240, dtype=np.uint16).reshape(12, 20) * 273)), (20, 12),
                  "L"),
    "gray.png": (lambda: encode(noise(20, 12).convert("L")), (20, 12), "L"),
    "exif-rotated.jpg": (exif_rotated, (12, 20), "RGB"),
    "animated.gif": (animated_gif, (20, 12), "RGB"),
    "1x1.png": (lambda: encode(Image.new("RGB", (1, 1), (9, 99, 199))), (1, 1), "RGB"),
    "3x3.png": (lambda: encode(noise(3, 3)), (3, 3), "RGB"),
    "odd-17x13.png": (lambda: encode(noise(17, 13)), (17, 13), "RGB"),  # not a multiple of 2 or 4
    "strip-10000x10.png": (lambda: encode(noise(10000, 10)), (10000, 10), "RGB"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """bad/<name> and odd/<name> for every entry above."""
    root = tmp_path_factory.mktemp("inputs")
    out = {}
    for folder, table in (("bad", BAD_FILES), ("odd", ODD_FILES)):
        (root / folder).mkdir()
        for name, (make, *_) in table.items():
            out[name] = root / folder / name
            out[name].write_bytes(make())
    return out


def run_task(task: str, models, image, *, mask=None):
    """One pipeline call of `task` on `image`; returns the image (or the top labels)."""
    if task == "classify":
        return pipelines.classify(models["classify-cifar10"], image, top_k=3)[0]
    if task == "upscale":
        return pipelines.upscale(models["sr-x2"], image)[0]
    if task == "denoise":
        return pipelines.denoise(models["denoise"], image, 10)[0]
    if mask is None:
        size = pipelines.open_image(image).size
        mask = Image.new("L", size, 0)
        mask.paste(255, (0, 0, max(1, size[0] // 2), max(1, size[1] // 2)))
    return pipelines.inpaint(models["inpaint"], image, mask)[0]


TASKS = ["classify", "upscale", "denoise", "inpaint"]


# ----------------------------------------------------------------------------------------------- pipelines
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_through_the_pipelines(name, task, files, models):
    with pytest.raises(ImageInputError, match=BAD_FILES[name][1]) as e:
        run_task(task, models, files[name], mask=Image.new("L", (4, 4)))
    assert name in str(e.value)  # the message names the file


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", sorted(ODD_FILES))
def test_odd_but_valid_files_through_the_pipelines(name, task, files, models):
    _, size, mode = ODD_FILES[name]
    assert pipelines.open_image(files[name]).mode == mode
    out = run_task(task, models, files[name])
    if task == "classify":
        assert len(out) == 3 and all(0 <= p <= 1 for _, p in out)
        return
    assert out.size == ((2 * size[0], 2 * size[1]) if task == "upscale" else size)
    assert out.mode == mode


def test_animated_gif_gives_its_first_frame(files, models):
    out = run_task("denoise", models, files["animated.gif"])
    r, g, b = np.asarray(out, np.float64).reshape(-1, 3).mean(0)
    assert r > b  # the red first frame, not the blue second one


@pytest.mark.parametrize("w,h", [(30000, 30000), (100_000, 1000), (7000, 7000)])
def test_decompression_bomb_is_refused_fast_without_allocating(w, h, models):
    data = bomb_png(w, h)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(ImageInputError, match="decompression bomb|pixel limit"):
        pipelines.upscale(models["sr-x2"], data)
    assert time.perf_counter() - start < 2.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB: the image was decoded"


@pytest.mark.parametrize("case", ["empty", "full", "wrong size", "non-binary", "gray float array", "bool array"])
def test_masks(case, models):
    img = noise(24, 16)
    masks = {"empty": Image.new("L", (24, 16), 0), "full": Image.new("L", (24, 16), 255),
             "wrong size": Image.new("L", (16, 24), 255),
             "non-binary": Image.fromarray(np.tile(np.linspace(0, 255, 24).astype(np.uint8), (16, 1))),
             "gray float array": np.tile(np.linspace(0, 1, 24), (16, 1)),
             "bool array": np.pad(np.ones((4, 4), bool), ((2, 10), (2, 18)))}
    if case == "wrong size":
        with pytest.raises(ImageInputError, match="mask is 16x24 but the image is 24x16"):
            pipelines.inpaint(models["inpaint"], img, masks[case])
        return
    out, info = pipelines.inpaint(models["inpaint"], img, masks[case])
    assert out.size == (24, 16) and out.mode == "RGB"
    if case == "empty":
        assert np.array_equal(np.asarray(out), np.asarray(img)) and "empty" in info.notes[0]
    if case == "non-binary":  # thresholded at 50%: the left half is known and kept exactly
        assert np.array_equal(np.asarray(out)[:, :12], np.asarray(img)[:, :12])


@pytest.mark.parametrize("kwargs,match", [
    (dict(class_index=10), "class_index"), (dict(class_index=-1), "class_index"), (dict(num_images=65), "num_images"),
    (dict(num_images=10 ** 9), "num_images"), (dict(seed=-5), "seed"), (dict(seed=2 ** 64), "seed"),
    (dict(seed=float("nan")), "integer"), (dict(seed=None), "integer"), (dict(class_index="cat"), "integer")])
def test_generate_refuses_bad_parameters(kwargs, match, models):
    with pytest.raises(ImageInputError, match=match):
        pipelines.generate(models["generate-fashion-mnist-gan"], **{"class_index": 0, "num_images": 2, **kwargs})


def test_cpu_out_of_memory_is_retried_with_smaller_tiles(monkeypatch, models):
    """PyTorch's CPU allocator says "can't allocate memory", not "out of memory" (what CUDA says, and what
    test_pipelines.py covers): a CPU-only demo must retry with smaller tiles the same way."""
    real_run, tiles = _runner._run, []
    message = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
               "to allocate 40000000000 bytes. Error code 12 (Cannot allocate memory)")

    def small_memory(fn, x, *, tile, **kw):
        tiles.append(tile)
        if tile is None or tile > 64:
            raise RuntimeError(message)
        return real_run(fn, x, tile=tile, **kw)

    monkeypatch.setattr(_runner, "_run", small_memory)
    out, info = pipelines.upscale(models["sr-x2"], noise(200, 150))
    assert out.size == (400, 300) and info.tiled and tiles == [None, 100, 50] and info.tile_size == 50
    assert any("out of memory" in n for n in info.notes)
    monkeypatch.setattr(_runner, "_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError(message)))
    with pytest.raises(CnnImgError, match="ran out of memory"):
        pipelines.denoise(models["denoise"], noise(40, 40), 10)


# ----------------------------------------------------------------------------------------------- properties
def make_input(w: int, h: int, mode: str, kind: str, seed: int):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "F":
        img = Image.fromarray(rng.random((h, w)).astype(np.float32))  # [0, 1]: accepted
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
    if kind == "png" and mode not in ("CMYK", "F", "YCbCr"):
        return encode(img)
    if kind == "array" and mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(img)
    return img


SIZES = st.integers(1, 64)
IMAGE_MODES = st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "F", "I"])
KINDS = st.sampled_from(["pil", "png", "array"])


def check_image(out, size):
    assert isinstance(out, Image.Image) and out.size == size and out.mode in MODES


@SETTINGS
@given(w=SIZES, h=SIZES, mode=IMAGE_MODES, kind=KINDS, scale=st.sampled_from([2, 3, 4]),
       tile=st.sampled_from(["auto", None, 32, 48, 7, "big"]))
def test_upscale_property(sr_models, w, h, mode, kind, scale, tile):
    try:
        out, _ = pipelines.upscale(sr_models[scale], make_input(w, h, mode, kind, w * h), tile=tile)
    except CnnImgError:
        return
    check_image(out, (w * scale, h * scale))


@SETTINGS
@given(w=SIZES, h=SIZES, mode=IMAGE_MODES, kind=KINDS,
       sigma=st.one_of(st.none(), st.floats(-10, 100), st.integers(-5, 80),
                       st.sampled_from([float("nan"), float("inf"), "12", "loud", [3]])))
def test_denoise_property(models, w, h, mode, kind, sigma):
    try:
        out, _ = pipelines.denoise(models["denoise"], make_input(w, h, mode, kind, w + h), sigma)
    except CnnImgError:
        return
    check_image(out, (w, h))


@SETTINGS
@given(w=SIZES, h=SIZES, mode=IMAGE_MODES, kind=KINDS, dilate=st.one_of(st.integers(-3, 70), st.just(2.5)),
       mask_kind=st.sampled_from(["random", "gradient", "wrong size", "empty"]))
def test_inpaint_property(models, w, h, mode, kind, dilate, mask_kind):
    rng = np.random.default_rng(w * 64 + h)
    mask = {"random": lambda: Image.fromarray((rng.random((h, w)) > 0.7).astype(np.uint8) * 255),
            "gradient": lambda: Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)),
            "wrong size": lambda: Image.new("L", (w + 1, h), 255),
            "empty": lambda: Image.new("L", (w, h), 0)}[mask_kind]()
    try:
        out, _ = pipelines.inpaint(models["inpaint"], make_input(w, h, mode, kind, w), mask, dilate=dilate)
    except CnnImgError:
        return
    check_image(out, (w, h))


@SETTINGS
@given(w=SIZES, h=SIZES, mode=IMAGE_MODES, kind=KINDS, top_k=st.integers(-1, 20))
def test_classify_property(models, w, h, mode, kind, top_k):
    try:
        top, _ = pipelines.classify(models["classify-cifar10"], make_input(w, h, mode, kind, h), top_k=top_k)
    except CnnImgError:
        return
    assert 1 <= len(top) <= min(top_k, 10) and all(0 <= p <= 1 for _, p in top)


@SETTINGS
@given(class_index=st.integers(-3, 12), num_images=st.integers(-1, 70), seed=st.integers(-2, 2 ** 65))
def test_generate_property(models, class_index, num_images, seed):
    try:
        images, _ = pipelines.generate(models["generate-fashion-mnist-gan"], class_index, num_images, seed)
    except CnnImgError:
        return
    assert len(images) == num_images and all(im.size == (28, 28) for im in images)


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_reports_every_bad_file_and_every_bad_parameter(files, weights, tmp_path):
    """A handful of `python -m cnnimg_hub` processes, started together (each pays the torch import)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    bad, odd = files["zero.png"].parent, files["gray.png"].parent
    calls = {
        "bad": ["upscale", bad, "--model", weights / "sr-x2", "-o", tmp_path / "bad-out"],
        "odd": ["denoise", odd, "--model", weights / "denoise", "--sigma", "10", "-o", tmp_path / "odd-out"],
        "class": ["generate", "--model", weights / "generate-fashion-mnist-gan", "--class", "99", "-o", tmp_path],
        "count": ["generate", "--model", weights / "generate-fashion-mnist-gan", "-n", "1000", "--seed", "-5",
                  "-o", tmp_path],
        "mask": ["inpaint", odd / "gray.png", "--model", weights / "inpaint", "--mask", files["truncated.png"],
                 "-o", tmp_path / "mask-out"],
    }
    procs = {k: subprocess.Popen([sys.executable, "-m", "cnnimg_hub", *map(str, args)], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, args in calls.items()}
    out = {k: (p.communicate(timeout=240), p.returncode) for k, p in procs.items()}
    for k, ((stdout, stderr), code) in out.items():
        print(k, code, stdout, stderr)
        assert "Traceback" not in stderr, k
    (_, err), code = out["bad"]
    assert code == 1 and f"{len(BAD_FILES)} of {len(BAD_FILES)} file(s) failed" in err
    for name, (_, fragment) in BAD_FILES.items():
        line = next(line for line in err.splitlines() if line.startswith("error:") and name in line)
        assert fragment in line, line
    assert not (tmp_path / "bad-out").exists() or not any((tmp_path / "bad-out").iterdir())  # nothing half-written
    (_, err), code = out["odd"]
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "odd-out").iterdir()) == sorted(
        f"{Path(n).stem}_denoised.png" for n in ODD_FILES)
    assert Image.open(tmp_path / "odd-out" / "exif-rotated_denoised.png").size == (12, 20)
    (_, err), code = out["class"]
    assert code == 1 and "class_index" in err and err.count("\n") <= 2
    (_, err), code = out["count"]
    assert code == 1 and ("num_images" in err or "seed" in err)
    (_, err), code = out["mask"]
    assert code == 1 and "truncated.png" in err and "truncated" in err


# ----------------------------------------------------------------------------------------------- the app
def app_call(task: str, fn, path):
    """The result of the app's handler: classify's labels, else the CNN result of the comparison."""
    if task == "classify":
        return fn["classify"](str(path), "classify-cifar10", "")[0]
    if task == "upscale":
        return fn["upscale"](str(path), 2, "sr-x2", "", False)[-1].cnn.image
    if task == "denoise":
        return fn["denoise"](str(path), 10, False, False, "denoise", "")[-1].cnn.image
    # inpaint: the path is the uploaded mask; the editor holds a good image
    return fn["inpaint"]({"background": noise(20, 12), "layers": [], "composite": None}, None, str(path), 0, False,
                         "inpaint", "")[-1].cnn.image


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_uploads_through_the_app_handlers(name, task, files, fn):
    with pytest.raises(gr.Error) as e:
        app_call(task, fn, files[name])
    message = e.value.message
    assert BAD_FILES[name][1] in message and name in message
    assert str(files[name].parent) not in message  # the upload is named by its file name, not the server's path


@pytest.mark.parametrize("name", sorted(n for n in ODD_FILES if not n.startswith("strip")))
def test_odd_uploads_through_the_app_handlers(name, files, fn):
    size = ODD_FILES[name][1]
    assert len(app_call("classify", fn, files[name])) == 5
    assert app_call("upscale", fn, files[name]).size == (2 * size[0], 2 * size[1])
    assert app_call("denoise", fn, files[name]).size == size


def test_app_strip_and_oversized_output_are_clear(files, fn, monkeypatch):
    assert app_call("upscale", fn, files["strip-10000x10.png"]).size == (20000, 20)
    monkeypatch.setattr(tabs.upscale, "MAX_OUTPUT_PIXELS", 100_000)
    with pytest.raises(gr.Error, match="would be over 0.1 megapixels: upload a smaller image"):
        app_call("upscale", fn, files["strip-10000x10.png"])


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (8, 8), (12, 12)])
def test_denoise_tab_on_tiny_images(size, fn, monkeypatch, tmp_path):
    """bm3d raises on images under its 8 px block and segfaults (taking the server down) at exactly 8x8."""
    real = compare.classical.bm3d_denoise

    def guarded(image, sigma):
        assert min(image.size) >= 16, f"BM3D called on a {image.size} image"
        return real(image, sigma)

    monkeypatch.setattr(compare.classical, "bm3d_denoise", guarded)
    noise(*size).save(tmp_path / "tiny.png")
    c = fn["denoise"](str(tmp_path / "tiny.png"), 10, False, True, "denoise", "")[-1]
    *_, table, _, c = fn["denoise_bm3d"](fn["denoise_nlm"](c)[-1], True)
    cnn, nlm, bm3d = (m.image for m in c.methods)
    assert cnn.size == nlm.size == size and bm3d is None and "skipped" in table


@pytest.mark.parametrize("size", [(3, 3)])
def test_inpaint_and_upscale_tabs_on_tiny_images(size, fn):
    editor = {"background": noise(*size), "layers": [Image.new("RGBA", size, (255, 0, 255, 255))], "composite": None}
    c = fn["inpaint_telea"](fn["inpaint"](editor, None, None, 0, True, "inpaint", "")[-1])[-1]
    assert [m.image.size for m in c.methods] == [size, size]
    c = fn["upscale"](editor["background"], 2, "sr-x2", "", True)[-1]  # 3x3: crop 2x2, down to 1x1
    assert c.cnn.image.size == (2, 2)


@pytest.mark.parametrize("args,match", [
    (("99", 0, 4), "not a class"), (("-1", 0, 4), "not a class"), (("0", 0, 65), "between 1 and 64"),
    (("0", 0, 0), "between 1 and 64"), (("0", -5, 4), "(?i)seed"), (("0", 2 ** 70, 4), "(?i)seed"),
    (("0", 0, None), "num_images"), (("0", 0, float("nan")), "num_images"), ((None, 0, 2), "class")])
def test_generate_handler_refuses_bad_parameters(args, match, fn):
    with pytest.raises(gr.Error, match=match):
        fn["generate"]("generate-fashion-mnist-gan", "", *args)


@pytest.mark.parametrize("mask", ["wrong size", "non-binary", "full"])
def test_inpaint_handler_masks(mask, fn, tmp_path):
    img = noise(24, 16)
    m = {"wrong size": Image.new("L", (12, 8), 255), "full": Image.new("L", (24, 16), 255),
         "non-binary": Image.fromarray(np.tile(np.linspace(0, 255, 24).astype(np.uint8), (16, 1)))}[mask]
    m.save(tmp_path / "m.png")
    editor = {"background": img, "layers": [], "composite": None}
    result = fn["inpaint"](editor, None, str(tmp_path / "m.png"), 0, False, "inpaint", "")[-1].cnn.image
    assert result.size == img.size


# ----------------------------------------------------------------------------------------------- the served API
def test_bad_uploads_through_gradio_client(weights, files, free_port):
    from gradio_client import Client, handle_file

    demo = app.build_demo(weights, "cpu")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=tabs.common.MAX_FILE_SIZE)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for name, endpoint in (("bomb.png", "/upscale"), ("truncated.jpg", "/denoise")):
            args = {"/upscale": (2, "sr-x2", "", False), "/denoise": (10, False, False, "denoise", "")}[endpoint]
            with pytest.raises(Exception, match=BAD_FILES[name][1]) as e:
                client.predict(handle_file(str(files[name])), *args, api_name=endpoint)
            assert "Traceback" not in str(e.value)
        with pytest.raises(Exception, match="not a class"):
            client.predict("generate-fashion-mnist-gan", "", "99", 0, 4, api_name="/generate")
        gallery, _ = client.predict("generate-fashion-mnist-gan", "", "0", 3, 2, api_name="/generate")
        assert len(gallery) == 2  # still serving after the errors
    finally:
        demo.close()


# ----------------------------------------------------------------------------------------------- Hub faults
@pytest.fixture(scope="module")
def hub_repo(weights, tmp_path_factory):
    """A tiny super-resolution repo on the test Hub, with a copy in the session's default cache."""
    from conftest import HUB

    HUB.fail_mode = None
    repo = f"tester/robust-sr-{uuid.uuid4().hex[:8]}"
    cnnimg_hub.push_to_hub(weights / "sr-x2", repo)
    return repo


def test_stalled_hub_gives_a_bounded_wait_and_uses_the_cache(hub_server, hub_repo, hf_cache, monkeypatch):
    monkeypatch.setattr(_hub, "HUB_TIMEOUT", 1.0)
    cached = cnnimg_hub.load_model(hub_repo, cache_dir=hf_cache)
    hub_server.fail_mode, hub_server.stall_seconds = "stall", 5.0
    start = time.monotonic()
    again = cnnimg_hub.load_model(hub_repo, cache_dir=hf_cache)  # the cached copy, after at most one timeout
    assert time.monotonic() - start < 3.5 and again.scale == cached.scale == 2
    start = time.monotonic()
    with pytest.raises(HubError, match=r"did not answer within 1 s.*no copy is in the local cache"):
        cnnimg_hub.load_model(f"tester/never-cached-{uuid.uuid4().hex[:6]}", cache_dir=hf_cache)
    assert time.monotonic() - start < 3.5


def test_stalled_hub_through_the_app_repo_box(hub_server, hub_repo, fn, files, monkeypatch):
    monkeypatch.setattr(_hub, "HUB_TIMEOUT", 1.0)
    hub_server.fail_mode, hub_server.stall_seconds = "stall", 5.0
    start = time.monotonic()
    with pytest.raises(gr.Error, match="did not answer"):
        fn["upscale"](str(files["gray.png"]), 2, "", f"tester/uncached-{uuid.uuid4().hex[:6]}", False)
    assert time.monotonic() - start < 3.5
    hub_server.fail_mode = None
    sr = fn["upscale"](str(files["gray.png"]), 2, "", hub_repo, False)[-1].cnn.image  # fine once it answers
    assert sr.size == (40, 24)


def upload_raw(folder: Path, repo: str) -> None:
    """Publish a folder as is (push_to_hub refuses folders that do not load)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=repo)


@pytest.mark.parametrize("case,match", [("other task", "'super-resolution' model"),
                                        ("unknown keys", r"unknown key\(s\) \['attention_heads'\]"),
                                        ("huge config", "byte limit"), ("not json", "not valid JSON")])
def test_bad_hub_repos_through_the_app(case, match, hub_server, weights, fn, files, tmp_path):
    """Uploaded raw to the test Hub, then typed into the app's repo box: each refusal is a gr.Error naming it."""
    folder = tmp_path / "m"
    cnnimg_hub.save_model(cnnimg_hub.load_model(weights / "sr-x2"), folder)
    config = json.loads((folder / "config.json").read_text())
    if case == "unknown keys":
        config["attention_heads"] = 4
    elif case == "huge config":
        config["notes"] = "x" * (_hub.MAX_CONFIG_BYTES + 1)
    (folder / "config.json").write_text("{not json" if case == "not json" else json.dumps(config))
    repo = f"tester/bad-{case.replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
    upload_raw(folder, repo)
    with pytest.raises(gr.Error, match=match):
        if case == "other task":
            fn["denoise"](str(files["gray.png"]), 10, False, False, "denoise", repo)
        else:
            fn["upscale"](str(files["gray.png"]), 2, "sr-x2", repo, False)


TRAVERSALS = ["../../etc/passwd", "..", "/etc/passwd", "tester/../../etc", "tester/x@../../etc",
              "tester/x@main/../../x", "tester/x@/etc/passwd", "..\\..\\windows", "tester/..", "~/.ssh/id_rsa",
              "%2e%2e/%2e%2e/etc", "tester/x/../../../", "tester\x00/x", "file:///etc/passwd",
              "http://127.0.0.1:1/x", "tester/" + "a" * 500]


@pytest.mark.parametrize("repo", TRAVERSALS)
def test_path_traversal_in_the_repo_box_is_a_gr_error(repo, fn, files, hub_server):
    n = len(hub_server.requests)
    with pytest.raises(gr.Error) as e:
        fn["upscale"](str(files["gray.png"]), 2, "sr-x2", repo, False)
    assert "root:" not in e.value.message  # no file content in the message
    assert all(".." not in path for _, path in hub_server.requests[n:])  # nothing traversal-like reached the Hub
