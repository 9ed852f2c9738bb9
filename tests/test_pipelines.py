"""cnnimg_hub.pipelines and cnnimg_hub.tiling on the CPU with tiny untrained models."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from cnnimg_hub import _runner, create_model, degrade, load_model, metrics, pipelines, runtime, save_model
from cnnimg_hub.spec import spec_of
from cnnimg_hub.errors import CnnImgError, ImageInputError, WrongTaskError
from cnnimg_hub.imageio import to_tensor
from cnnimg_hub.pipelines import (RunInfo, classify, denoise, estimate_sigma, generate, inpaint, interpolate,
                                  select_device, upscale)
from cnnimg_hub.tiling import pad_to_multiple, tile_count, tile_layout, tiled


def seeded(name, **kw):
    """A fresh model with reproducible random weights. Some families zero-initialise their last conv (to start
    as bicubic or identity); that is re-drawn, or the tiling tests would compare constants."""
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    for p in model.parameters():
        if p.dim() > 1 and not p.any():
            torch.nn.init.normal_(p, std=0.05)
    return model


@pytest.fixture(scope="module")
def sr():
    return seeded("sr-espcn", scale=2, n_feats=8, n_layers=1)


@pytest.fixture(scope="module")
def dn():
    return seeded("denoise-ffdnet", n_feats=8, n_layers=3)


@pytest.fixture(scope="module")
def inp():
    return seeded("inpaint-gated-unet", base_channels=4, depth=1, dilations=[1])


@pytest.fixture(scope="module")
def gens():
    return [seeded("generator-dcgan", base_channels=8), seeded("generator-vae", base_channels=8)]


def photo(w, h, mode="RGB", seed=0):
    """A smooth random image (blurred noise): structured like a photo, unlike white noise."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((h, w, 3)), (3, 3, 0))
    a = (a - a.min()) / (np.ptp(a) + 1e-9)
    return Image.fromarray((a * 255).round().astype(np.uint8)).convert(mode)


def hole_mask(w, h, big=False):
    """A rectangular hole: the top-left quarter's inner part, or (big) all but a 10 px frame."""
    m = Image.new("L", (w, h), 0)
    m.paste(255, (10, 10, w - 10, h - 10) if big else (w // 4, h // 4, w // 2, h // 2))
    return m


# ----------------------------------------------------------------------------------------------- tiling
def test_pad_to_multiple_reflects_or_replicates():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    p, size = pad_to_multiple(x, 4)
    assert size == (2, 3) and p.shape == (1, 1, 4, 4)
    assert p[0, 0, 0].tolist() == [0, 1, 2, 1]  # reflect
    p, _ = pad_to_multiple(torch.ones(1, 3, 1, 1), 8, min_size=16)  # too small to reflect: replicate
    assert p.shape == (1, 3, 16, 16) and torch.all(p == 1)


def test_tile_larger_than_image_is_a_plain_call(sr):
    x = to_tensor(photo(40, 30))
    with torch.inference_mode():
        assert torch.equal(tiled(sr, x, tile=64, overlap=16, scale=2), sr(x))


@pytest.mark.parametrize("multiple", [1, 2, 8])
def test_tile_layout_covers_with_overlap_and_least_work(multiple):
    for length in range(multiple, 700, 7 * multiple):
        for tile, overlap in [(64, 16), (100, 12), (256, 12), (512, 64)]:
            tile_m = tile // multiple * multiple
            size, starts = tile_layout(length, tile_m, overlap, multiple)
            assert size <= max(tile_m, 0) or starts == [0]
            assert size % multiple == 0 and all(s % multiple == 0 for s in starts)
            assert starts[0] == 0 and starts[-1] + size == length  # covers both borders, stays inside
            assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap
            if len(starts) > 1:  # the fewest tiles: one fewer, of full size at the longest stride, falls short
                stride = (tile_m - overlap) // multiple * multiple
                assert tile_m + (len(starts) - 2) * stride < length
    assert tile_layout(1024, 512, 12) == (350, [0, 337, 674])  # not 3 x 512 shifted inward
    assert tile_count((1024, 512), 512, 12) == 3


# Receptive-field radii (input pixels) of the test models: ESPCN(n_layers=1) 2 + 1 + 1 = 4 (bicubic skip: 2);
# FFDNet(n_layers=3) 3 convs at half resolution = 7; GatedUNet(depth=1, dilations=[1]) about 12. A tile gives
# no weight within overlap // 4 of its inner edges, so overlap >= 4 x radius makes tiling exact; the overlaps
# below (16, 32, 64) are chosen for that. With less overlap the difference grows (printed as a contrast).
@pytest.mark.parametrize("task", ["super-resolution", "denoising", "inpainting"])
def test_tiled_matches_untiled(task, sr, dn, inp):
    img = photo(150, 130)
    x = to_tensor(img)
    if task == "super-resolution":
        fn, scale, overlap, multiple, tile = sr, 2, 16, 1, 48
    elif task == "denoising":
        fn, scale, overlap, multiple, tile = (lambda t: dn(t, 25.0)), 1, 32, 2, 64
    else:
        m = to_tensor(hole_mask(150, 130, big=True))[:, :1]  # across the seams: only holes are computed
        x = torch.cat([x, m], 1)
        fn, scale, overlap, multiple, tile = (lambda t: inp(t[:, :3], t[:, 3:])), 1, 64, 2, 128
    x, _ = pad_to_multiple(x, multiple)
    with torch.inference_mode():
        whole = fn(x)
        parts = tiled(fn, x, tile=tile, overlap=overlap, scale=scale, multiple_of=multiple)
        loose = tiled(fn, x, tile=tile, overlap=4, scale=scale, multiple_of=multiple)
    diff, loose_diff = (parts - whole).abs().max().item(), (loose - whole).abs().max().item()
    print(f"{task}: tiled vs untiled max abs diff {diff:.2e} (overlap {overlap}); {loose_diff:.2e} with overlap 4")
    assert parts.shape == whole.shape and diff < 1e-4
    assert loose_diff > diff


@pytest.mark.parametrize("task", ["super-resolution", "denoising", "inpainting"])
def test_pipeline_tiling_agrees_with_one_pass(task, sr, dn, inp):
    img = photo(150, 130)
    if task == "super-resolution":
        run = lambda tile: upscale(sr, img, tile=tile)  # noqa: E731
        sr.config = {**spec_of(sr).to_config(), "tile_overlap": 16}  # as a loaded model with this tile advice
    elif task == "denoising":
        run = lambda tile: denoise(dn, img, 25, tile=tile)  # noqa: E731
    else:
        run = lambda tile: inpaint(inp, img, hole_mask(150, 130, big=True), tile=tile)  # noqa: E731
    try:
        (a, ia), (b, ib) = run(None), run(64 if task != "inpainting" else 128)
    finally:
        sr.__dict__.pop("config", None)
    assert not ia.tiled and ib.tiled and ib.tiles >= 4
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()
    print(f"{task}: pipeline tiled vs untiled, max 8-bit difference {diff} ({ib.summary()})")
    assert diff <= 1  # the float results agree to 1e-4; rounding to 8 bits can flip a level at .5


# ----------------------------------------------------------------------------------------------- end to end
def test_classify(tmp_path):
    model = seeded("classifier-cifar10", widths=[8, 8])
    top, info = classify(model, photo(50, 40), top_k=3)
    assert [l for l, _ in top] and len(top) == 3 and info.device == "cpu"
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    everything, info = classify(model, photo(50, 40), top_k=50)
    assert len(everything) == 10 and abs(sum(p for _, p in everything) - 1) < 1e-5
    assert any("clipped" in n for n in info.notes)
    assert {l for l, _ in everything} == set(model.label_names)
    gray = seeded("classifier-fashion-mnist", widths=[8, 8])
    _, info = classify(gray, photo(9, 30, "RGBA"), top_k=1)
    assert any("converted to L" in n for n in info.notes) and any("white" in n for n in info.notes)
    save_model(model, tmp_path / "m")  # a loaded model uses its config.json
    assert classify(load_model(tmp_path / "m"), photo(50, 40), top_k=3)[0] == top
    with pytest.raises(ImageInputError, match="top_k"):
        classify(model, photo(8, 8), top_k=0)


def test_generate_is_deterministic(gens):
    for model in gens:
        a, info = generate(model, 3, num_images=4, seed=7)
        b, _ = generate(model, 3, num_images=4, seed=7)
        c, _ = generate(model, 3, num_images=4, seed=8)
        assert len(a) == 4 and a[0].size == (28, 28) and a[0].mode == "L" and info.dtype == "float32"
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
        assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, c))
    assert len(generate(gens[0], 3.0, num_images=2.0, seed=7.0)[0]) == 2  # whole floats, as UI sliders send


def test_interpolate_starts_and_ends_at_the_seeds(gens):
    model = gens[0]
    path, _ = interpolate(model, 2, seed_a=1, seed_b=2, steps=5)
    first, _ = generate(model, 2, num_images=1, seed=1)
    last, _ = generate(model, 2, num_images=1, seed=2)
    assert len(path) == 5
    for got, want in ((path[0], first[0]), (path[-1], last[0])):
        assert np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16)).max() <= 1
    assert len(interpolate(model, 2, 1, 2, steps=3, method="lerp")[0]) == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(class_index=10), "class_index"), (dict(class_index=-1), "class_index"),
    (dict(class_index=1.5), "integer"), (dict(class_index="1"), "integer"), (dict(num_images=0), "num_images"), (dict(num_images=65), "num_images"),
    (dict(seed=-1), "seed"), (dict(seed=2 ** 63), "seed"), (dict(seed=True), "integer")])
def test_generate_refuses_bad_parameters(gens, kwargs, match):
    with pytest.raises(ImageInputError, match=match):
        generate(gens[0], **{"class_index": 0, **kwargs})


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (10000, 10), (10, 10000)])
@pytest.mark.parametrize("task", ["super-resolution", "denoising", "inpainting"])
def test_any_size_works(task, size, sr, dn, inp):
    img = photo(*size) if min(size) > 3 else Image.new("RGB", size, (10, 200, 30))
    if task == "super-resolution":
        out, _ = upscale(sr, img)
        assert out.size == (2 * size[0], 2 * size[1])
    elif task == "denoising":
        out, _ = denoise(dn, img, 10)
        assert out.size == size
    else:
        mask = Image.new("L", size, 255)
        out, _ = inpaint(inp, img, mask)
        assert out.size == size
    assert out.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_gray_and_alpha_are_kept(mode, sr, dn, inp):
    img = photo(24, 20, mode)
    alpha = np.asarray(img.getchannel("A")) if "A" in mode else None
    up, _ = upscale(sr, img)
    clean, _ = denoise(dn, img, 15)
    filled, _ = inpaint(inp, img, hole_mask(24, 20))
    for out in (up, clean, filled):
        assert out.mode == mode
    if alpha is not None:
        assert np.array_equal(np.asarray(clean.getchannel("A")), alpha)
        assert np.array_equal(np.asarray(filled.getchannel("A")), alpha)
        want = np.asarray(img.getchannel("A").resize(up.size, Image.BICUBIC))
        assert np.array_equal(np.asarray(up.getchannel("A")), want)


def test_gray_model_on_color_image():
    model = seeded("denoise-ffdnet", in_channels=1, n_feats=8, n_layers=3)
    out, _ = denoise(model, photo(20, 16), 20)
    assert out.mode == "RGB" and out.size == (20, 16)


def test_inpaint_keeps_known_pixels_exactly(inp):
    img = photo(40, 32)
    mask = hole_mask(40, 32)
    out, info = inpaint(inp, img, mask, dilate=2)
    holes = np.asarray(mask) > 0
    grown = np.zeros_like(holes)
    grown[32 // 4 - 2:32 // 2 + 2, 40 // 4 - 2:40 // 2 + 2] = True
    a, b = np.asarray(img), np.asarray(out)
    assert np.array_equal(a[~grown], b[~grown]) and not np.array_equal(a[grown], b[grown])
    assert not np.array_equal(a[holes], b[holes])
    same, info = inpaint(inp, img, Image.new("L", (40, 32), 0))
    assert np.array_equal(np.asarray(same), a) and "empty" in info.notes[0]


def test_mask_conventions(inp):
    img = photo(16, 16)
    box = np.zeros((16, 16), bool)
    box[4:8, 4:8] = True
    strokes_in_alpha = np.zeros((16, 16, 4), np.uint8)
    strokes_in_alpha[box, 3] = 255  # black, transparent layer with opaque strokes
    white_on_transparent = np.zeros((16, 16, 4), np.uint8)
    white_on_transparent[..., :3] = 255  # hidden white everywhere ...
    white_on_transparent[box, 3] = 255  # ... but only the box is visible
    for mask in (Image.fromarray(box), Image.fromarray(box.astype(np.uint8) * 200).convert("RGB"),
                 Image.fromarray(strokes_in_alpha), Image.fromarray(white_on_transparent)):
        assert np.array_equal(pipelines.mask_to_holes(pipelines.open_image(mask)), box), mask.mode
    dim = Image.fromarray(box.astype(np.uint8) * 100)  # under 50%: no hole
    assert "empty" in inpaint(inp, img, dim)[1].notes[0]
    opaque_black = Image.new("RGBA", (16, 16), (0, 0, 0, 255))
    assert "empty" in inpaint(inp, img, opaque_black)[1].notes[0]


def test_estimate_sigma_on_synthetic_noise():
    rng = np.random.default_rng(0)
    clean = np.asarray(photo(256, 256), np.float64) * 0.5 + 64  # stay away from 0 and 255 (no clipping)
    assert estimate_sigma(Image.fromarray(clean.round().astype(np.uint8))) < 3
    for sigma in (15, 25, 50):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).round().astype(np.uint8)
        est = estimate_sigma(Image.fromarray(noisy))
        print(f"sigma {sigma}: estimated {est:.2f}")
        assert abs(est - sigma) < 0.15 * sigma


def test_denoise_sigma(dn):
    img = photo(32, 32)
    _, info = denoise(dn, img)
    assert info.notes and info.notes[0].startswith("estimated noise sigma")
    assert info.used["sigma"] == pytest.approx(min(estimate_sigma(img), dn.max_sigma))  # what the CNN was given
    _, info = denoise(dn, img, 12)
    assert info.used == {"sigma": 12.0}
    for bad in (-1, 76, float("nan"), "loud"):
        with pytest.raises(ImageInputError, match="sigma"):
            denoise(dn, img, bad)
    with pytest.raises(ImageInputError, match="too small"):
        estimate_sigma(Image.new("L", (1, 5)))


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_inputs(tmp_path, sr, dn, inp):
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageInputError, match="not an image"):
        upscale(sr, tmp_path / "text.png")
    with pytest.raises(ImageInputError, match="12x10 but the image is 10x10"):
        inpaint(inp, photo(10, 10), Image.new("L", (12, 10)))
    with pytest.raises(ImageInputError, match="dilate"):
        inpaint(inp, photo(10, 10), hole_mask(10, 10), dilate=-1)
    with pytest.raises(ImageInputError, match="precision"):
        upscale(sr, photo(8, 8), precision="fp8")
    with pytest.raises(ImageInputError, match="too small"):
        denoise(dn, photo(8, 8), 5, tile=16)
    with pytest.raises(ImageInputError, match="tile"):
        upscale(sr, photo(8, 8), tile="big")
    with pytest.raises(WrongTaskError, match="super-resolution"):
        upscale(dn, photo(8, 8))
    with pytest.raises(ImageInputError, match="no image"):
        denoise(dn, None, 5)


def test_select_device():
    assert select_device() == select_device("auto") == select_device(None)
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(CnnImgError, match="unknown device"):
        select_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(CnnImgError, match="CUDA is not available"):
            select_device("cuda:1")


def test_run_info_summary():
    info = RunInfo(device="cpu", dtype="float32", tiled=True, tiles=4, tile_size=256, seconds=0.4213)
    assert info.summary() == "cpu · float32 · 4 tiles of 256 px · 0.42 s"
    assert RunInfo("cuda:0", "float16", seconds=1, notes=["x"]).summary() == "cuda:0 · float16 · 1.00 s · x"


def test_training_flag_is_restored(sr):
    sr.train()
    upscale(sr, photo(8, 8))
    assert sr.training
    sr.eval()


# ----------------------------------------------------------------------------------------------- fallbacks
def test_half_precision_nan_falls_back_to_float32(monkeypatch, dn):
    img = photo(40, 40)
    want, _ = denoise(dn, img, 20, precision="fp32")
    real_run, dtypes = _runner._run, []

    def nan_in_half(fn, x, *, dtype, **kw):
        dtypes.append(dtype)
        out = real_run(fn, x, dtype=torch.float32, **kw)
        return out.fill_(float("nan")) if dtype != torch.float32 else out  # as if fp16 overflowed

    monkeypatch.setattr(_runner, "_run", nan_in_half)
    got, info = denoise(dn, img, 20, precision="bf16")
    assert dtypes == [torch.bfloat16, torch.float32]
    assert info.dtype == "float32" and any("reran in float32" in n for n in info.notes)
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_out_of_memory_halves_the_tile(monkeypatch, sr):
    img = photo(256, 200)
    want, _ = upscale(sr, img, tile=None)
    real_run, tiles = _runner._run, []

    def small_memory(fn, x, *, tile, **kw):
        tiles.append(tile)
        if tile is None or tile > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(fn, x, tile=tile, **kw)

    monkeypatch.setattr(_runner, "_run", small_memory)
    got, info = upscale(sr, img)  # auto: 256 px fits one tile of 256, so it starts untiled
    assert tiles == [None, 128, 64] and info.tiled and info.tile_size == 64
    assert sum("out of memory" in n for n in info.notes) == 2
    assert np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16)).max() <= 1 + 1  # overlap 12 < 4 x radius

    monkeypatch.setattr(_runner, "_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(CnnImgError, match="smallest tile"):
        upscale(sr, img)
    with pytest.raises(CnnImgError, match="tiling is off"):
        upscale(sr, img, tile=None)
    monkeypatch.setattr(_runner, "_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors are not retried
        upscale(sr, img)


# ----------------------------------------------------------------------------------------------- degradations
@pytest.mark.parametrize("method", degrade.DOWNSAMPLERS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downsamplers_keep_size_alignment_and_mode(method, scale):
    """Every way of making an LR image gives floor(size / scale), the dtype and channels in, and stays aligned with
    PIL's bicubic (a shifted LR would cost an SR model PSNR it cannot recover)."""
    img = np.asarray(photo(50, 37))
    lr = degrade.downsample(img, scale, method)
    assert lr.shape == (37 // scale, 50 // scale, 3) and lr.dtype == np.uint8
    if not method.startswith("pil"):  # OpenCV drops a single channel's axis: it is put back
        assert degrade.downsample(img[..., :1].copy(), scale, method).shape == (37 // scale, 50 // scale, 1)
    ref = degrade.downsample(img, scale, "pil-bicubic").astype(float)
    assert np.abs(lr.astype(float) - ref).mean() < 12  # same content, same place
    with pytest.raises(ValueError, match="unknown downsampler"):
        degrade.downsample(img, scale, "nearest-ish")


@pytest.mark.parametrize("method", degrade.DOWNSAMPLERS)
def test_downscale_keeps_the_mode_of_a_pil_image(method):
    """The app's "degrade, then restore" downscales uploads of any mode; PIL bicubic is PIL's own resize."""
    rgb = photo(50, 37)
    for mode in ("L", "LA", "RGB", "RGBA", "P"):
        out = degrade.downscale(rgb.convert(mode), 4, method)
        assert out.size == (12, 9) and out.mode == ("RGB" if mode == "P" else mode)
    out = np.asarray(degrade.downscale(rgb, 2, method))
    assert np.array_equal(out, degrade.downsample(np.asarray(rgb), 2, method))
    if method == "pil-bicubic":
        assert np.array_equal(out, np.asarray(rgb.resize((25, 18), Image.BICUBIC)))
    with pytest.raises(ValueError, match="smaller than the scale"):
        degrade.downscale(rgb.resize((3, 3)), 4, method)
    with pytest.raises(ValueError, match="unknown downsampler"):
        degrade.downscale(rgb, 2, "box")


def test_jpeg_round_trip_is_lossy_but_close():
    img = np.asarray(photo(40, 40))
    out = degrade.jpeg(img, 90)
    assert out.shape == img.shape and 0 < np.abs(out.astype(int) - img).mean() < 8


def test_masked_psnr_and_ssim_count_only_the_hole():
    a = np.zeros((32, 32, 3))
    b = a.copy()
    b[:8] = 0.1  # error only in the top rows
    hole = np.zeros((32, 32))
    hole[:8] = 1
    assert metrics.psnr(a, b, mask=hole) == pytest.approx(20.0)
    assert metrics.psnr(a, b, mask=1 - hole) == float("inf")
    assert metrics.psnr(a, b) == pytest.approx(20.0 + 10 * np.log10(4))
    assert metrics.ssim(a, b, mask=1 - hole) > metrics.ssim(a, b, mask=hole)


# ----------------------------------------------------------------------------------------------- precision
def measured(model, decision):
    """`model` as if loaded from a config.json where benchmarks.precision recorded `decision`."""
    model.config = {**spec_of(model).to_config(), "precision": decision}
    return model


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_cpu_and_the_measurement(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: native)
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    bf16_if_native = torch.bfloat16 if native else torch.float32
    assert runtime.compute_dtype("auto", cpu, "bf16") == bf16_if_native
    assert runtime.compute_dtype(None, cpu, "bf16") == bf16_if_native
    assert runtime.compute_dtype("auto", cpu, "fp32") == runtime.compute_dtype("auto", cpu) == torch.float32
    assert runtime.compute_dtype("auto", mps, "bf16") == torch.float32
    assert runtime.compute_dtype("auto", cuda) == torch.float16  # as before, whatever the CPU
    assert runtime.compute_dtype("auto", cuda, cuda_auto=torch.float32) == torch.float32
    assert runtime.compute_dtype("bf16", cpu) == torch.bfloat16  # forced: runs (emulated) even without native bf16
    assert runtime.compute_dtype("FP32", cpu, "bf16") == torch.float32
    with pytest.raises(ImageInputError, match="precision must be"):
        runtime.compute_dtype("int8", cpu)


@pytest.mark.parametrize("native", [True, False])
def test_pipelines_run_a_measured_model_in_bf16_only_on_a_native_cpu(monkeypatch, native, sr, dn, inp, gens):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: native)
    want = "bfloat16" if native else "float32"
    classifier = seeded("classifier-cifar10", widths=[8, 8])
    calls = {
        "upscale": lambda p: upscale(measured(sr, "bf16"), photo(24, 24), precision=p),
        "denoise": lambda p: denoise(measured(dn, "bf16"), photo(24, 24), 10, precision=p),
        "inpaint": lambda p: inpaint(measured(inp, "bf16"), photo(24, 24), hole_mask(24, 24), precision=p),
        "classify": lambda p: classify(measured(classifier, "bf16"), photo(24, 24), precision=p),
        "generate": lambda p: generate(measured(gens[0], "bf16"), 1, 2, precision=p),
        "interpolate": lambda p: interpolate(measured(gens[1], "bf16"), 1, 0, 1, 3, precision=p),
    }
    try:
        for name, call in calls.items():
            assert call("auto")[1].dtype == want, name
            assert call("fp32")[1].dtype == "float32", name
            assert call("bf16")[1].dtype == "bfloat16", name
        assert upscale(measured(sr, "fp32"), photo(8, 8))[1].dtype == "float32"  # measured unfit for bf16
        for model in (sr, classifier):
            del model.config  # never measured
        assert upscale(sr, photo(8, 8))[1].dtype == classify(classifier, photo(8, 8))[1].dtype == "float32"
    finally:
        for model in (sr, dn, inp, *gens):
            model.__dict__.pop("config", None)


def test_precision_decision_round_trips_through_config_json(tmp_path, sr):
    import json

    folder = save_model(sr, tmp_path / "m")
    assert "precision" not in json.loads((folder / "config.json").read_text())  # never measured: not written
    assert spec_of(load_model(folder)).precision is None  # an old config loads as before: float32 on auto
    config = json.loads((folder / "config.json").read_text())
    check = {"metric": "PSNR (dB)", "fp32": 30.0, "bf16": 29.99, "change": -0.01, "tolerance": 0.05, "data": "x"}
    (folder / "config.json").write_text(json.dumps({**config, "precision": "bf16", "precision_check": check}))
    loaded = load_model(folder)
    assert spec_of(loaded).precision == "bf16" and spec_of(loaded).precision_check == check
    (folder / "config.json").write_text(json.dumps({**config, "precision": "fp16"}))
    with pytest.raises(CnnImgError, match="precision must be 'fp32' or 'bf16'"):
        load_model(folder)


# ----------------------------------------------------------------------------------------------- batching
def test_classify_batch_matches_single_calls():
    model = seeded("classifier-cifar10", widths=[8, 8])
    images = [photo(50, 40, seed=1), photo(32, 32, "L", seed=2), photo(9, 30, "RGBA", seed=3)]
    batched = pipelines.classify_batch(model, images, top_k=3, precision="fp32")
    for image, (top, info) in zip(images, batched):
        want, want_info = classify(model, image, top_k=3, precision="fp32")
        assert [l for l, _ in top] == [l for l, _ in want]
        assert np.allclose([p for _, p in top], [p for _, p in want], atol=1e-5)
        assert info.notes == want_info.notes
    assert pipelines.classify_batch(model, []) == []


def test_generate_batch_matches_single_calls(gens):
    requests = [(3, 4, 7), (0, 1, 0), (3, 2, 8)]
    for model in gens:
        batched = pipelines.generate_batch(model, requests, precision="fp32")
        for (c, n, seed), (images, info) in zip(requests, batched):
            want, _ = generate(model, c, n, seed, precision="fp32")
            assert len(images) == n and info.dtype == "float32"
            for got, exp in zip(images, want):
                assert np.abs(np.asarray(got, np.int16) - np.asarray(exp, np.int16)).max() <= 1
    with pytest.raises(ImageInputError, match="seed"):
        pipelines.generate_batch(gens[0], [(0, 1, 0), (0, 1, -1)])


def test_keep_freed_memory_sets_glibc_options():
    import platform

    from cnnimg_hub import runtime

    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert runtime.keep_freed_memory() is on_glibc  # every mallopt accepted on glibc; a no-op elsewhere
