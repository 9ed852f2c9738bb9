"""cnnimg_hub.imageio: every refusal raises ImageInputError, every mode comes out as L, LA, RGB or RGBA."""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from cnnimg_hub.errors import ImageInputError
from cnnimg_hub.imageio import encode_png, merge_alpha, open_image, save_png, split_alpha, to_image, to_tensor


def noise(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)
    return Image.fromarray(a)


def encoded(img, fmt="PNG", **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width, height):
    """A PNG whose header announces width x height but whose data is a few bytes: a decompression bomb stand-in
    that would fail (truncated) if anything tried to decode it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------------- sources
def test_every_source_kind_gives_the_same_image(tmp_path):
    img = noise(7, 5)
    (tmp_path / "a.png").write_bytes(encoded(img))
    want = np.asarray(img)
    for src in (tmp_path / "a.png", str(tmp_path / "a.png"), encoded(img), io.BytesIO(encoded(img)),
                np.asarray(img), img):
        out = open_image(src)
        assert out.mode == "RGB" and np.array_equal(np.asarray(out), want), type(src)
    assert open_image(img) is not img  # never the caller's object


def test_unsupported_source_type():
    with pytest.raises(ImageInputError, match="cannot read an image from int"):
        open_image(42)


# ----------------------------------------------------------------------------------------------- refusals
def test_missing_and_zero_byte_files(tmp_path):
    with pytest.raises(ImageInputError, match="no such file"):
        open_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        open_image(tmp_path / "empty.png")
    with pytest.raises(ImageInputError, match="empty"):
        open_image(b"")


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(ImageInputError, match="not an image"):
        open_image(tmp_path / "notes.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path, fmt):
    data = encoded(noise(64, 64), fmt)
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match="truncated or corrupt"):
        open_image(tmp_path / "cut")


def test_over_max_bytes(tmp_path):
    data = encoded(noise(32, 32))
    (tmp_path / "a.png").write_bytes(data)
    for src in (tmp_path / "a.png", data, io.BytesIO(data)):
        with pytest.raises(ImageInputError, match="max_bytes"):
            open_image(src, max_bytes=len(data) - 1)
    assert open_image(data, max_bytes=len(data)).size == (32, 32)


def test_decompression_bomb_is_refused_from_the_header():
    # 8000 x 8000 = 64 Mpx is under PIL's own limit (89 Mpx) but over ours (40 Mpx); the data is garbage, so a
    # "truncated" error would mean we decoded before checking.
    with pytest.raises(ImageInputError, match="pixel limit"):
        open_image(png_header_only(8000, 8000))
    with pytest.raises(ImageInputError, match="pixel limit"):
        open_image(noise(20, 20), max_pixels=399)
    with pytest.raises(ImageInputError, match="pixel limit"):
        open_image(np.zeros((20, 20), np.uint8), max_pixels=399)


def test_pils_own_bomb_guard_is_mapped(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for side in (12, 20):  # 144 px: PIL warns; 400 px (> 2x): PIL raises. Both refused.
        with pytest.raises(ImageInputError, match="decompression bomb"):
            open_image(encoded(noise(side, side)))


def test_bad_arrays():
    with pytest.raises(ImageInputError, match=r"\[0, 1\]"):
        open_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(ImageInputError, match="NaN"):
        open_image(np.full((4, 4), np.nan))
    with pytest.raises(ImageInputError, match="dtype int64"):
        open_image(np.zeros((4, 4), np.int64))
    with pytest.raises(ImageInputError, match="shape"):
        open_image(np.zeros((4, 4, 5), np.uint8))


# ----------------------------------------------------------------------------------------------- modes
def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = open_image(encoded(img, exif=exif))
    assert out.size == (20, 40)
    assert np.array_equal(np.asarray(out), np.asarray(img.transpose(Image.Transpose.ROTATE_270)))
    assert out.getpixel((10, 5)) == (255, 0, 0) and out.getpixel((10, 35)) == (0, 0, 255)


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_animated_first_frame(fmt):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = open_image(data)
    assert out.mode == "RGB" and out.getpixel((4, 4)) == (255, 0, 0)


def test_16_bit_is_scaled_not_clipped():
    a = np.array([[0, 257, 32768, 65535]], np.uint16)
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    for src in (encoded(img), img, a):
        out = open_image(src)
        assert out.mode == "L" and np.asarray(out).tolist() == [[0, 1, 128, 255]]
    i32 = Image.fromarray(a.astype(np.int32))  # 16-bit data in a 32-bit container, as some decoders give it
    assert i32.mode == "I" and np.asarray(open_image(i32)).tolist() == [[0, 1, 128, 255]]
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert f.mode == "F" and np.asarray(open_image(f)).tolist() == [[0, 128, 255]]
    with pytest.raises(ImageInputError, match="outside"):
        open_image(Image.fromarray(np.array([[-5, 70000]], np.int32)))


def test_palette_keeps_transparency():
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    assert open_image(encoded(p)).mode == "RGB"
    p.info["transparency"] = 0
    out = open_image(encoded(p, transparency=0))
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0 and out.getpixel((1, 1)) == (255, 0, 0, 255)
    pa = Image.new("PA", (2, 2))
    assert open_image(pa).mode == "RGBA"


@pytest.mark.parametrize("mode,want", [("1", "L"), ("L", "L"), ("LA", "LA"), ("RGB", "RGB"), ("RGBA", "RGBA"),
                                       ("CMYK", "RGB"), ("YCbCr", "RGB"), ("LAB", "RGB"), ("I;16", "L")])
def test_modes_normalised(mode, want):
    assert open_image(Image.new(mode, (3, 2))).mode == want


def test_cmyk_jpeg_converts_to_rgb():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red in CMYK
    out = open_image(encoded(cmyk, "JPEG", quality=95))
    r, g, b = out.getpixel((4, 4))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


# ----------------------------------------------------------------------------------------------- alpha, tensors
def test_split_and_merge_alpha():
    rgba = Image.merge("RGBA", [*noise(6, 5).split(), noise(6, 5, 1)])
    color, alpha = split_alpha(rgba)
    assert color.mode == "RGB" and alpha.mode == "L"
    assert np.array_equal(np.asarray(merge_alpha(color, alpha)), np.asarray(rgba))
    la_color, la_alpha = split_alpha(rgba.convert("LA"))
    assert la_color.mode == "L" and merge_alpha(la_color, la_alpha).mode == "LA"
    assert split_alpha(color) == (color, None) and merge_alpha(color, None) is color
    big = merge_alpha(color.resize((20, 24)), alpha)  # after a x4 SR: alpha upscaled with bicubic
    assert big.mode == "RGBA" and big.size == (20, 24)
    assert np.array_equal(np.asarray(big.getchannel("A")), np.asarray(alpha.resize((20, 24), Image.BICUBIC)))


def test_tensor_round_trip_and_clamping(tmp_path):
    for mode in ("L", "LA", "RGB", "RGBA"):
        img = noise(5, 7, 4).convert(mode)
        t = to_tensor(img)
        assert t.dtype == torch.float32 and t.shape == (1, len(mode), 5, 7) and 0 <= t.min() and t.max() <= 1
        back = to_image(t)
        assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(img))
        saved = save_png(back, tmp_path / "deep" / f"{mode}.png")
        assert np.array_equal(np.asarray(Image.open(saved)), np.asarray(img))
    assert np.asarray(to_image(torch.tensor([[[-0.5, 0.5, 1.5]]]))).tolist() == [[0, 128, 255]]
    assert not list(tmp_path.glob("deep/.*.tmp"))  # no temp files left behind
    t = torch.tensor([[[-0.5, 0.5, 1.5]]])
    assert np.asarray(to_image(t, overwrite=True)).tolist() == [[0, 128, 255]] and t.tolist() == [[[0, 128, 255]]]


@pytest.mark.parametrize("deflater", ["isal", "zlib"])
@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16"])
def test_encode_png_is_lossless_in_every_mode_and_size(mode, deflater, monkeypatch):
    from cnnimg_hub import imageio

    if deflater == "zlib":
        monkeypatch.setattr(imageio, "isal_zlib", None)
    else:
        assert imageio.isal_zlib is not None  # requirements.txt installs it
    # sizes: one pixel, one row, one column, and large enough (> 1 MB of rows) to be deflated in parallel pieces
    for w, h in [(1, 1), (37, 1), (1, 29), (61, 43), (1200, 700)]:
        rng = np.random.default_rng(w * h)
        smooth = np.add.outer(np.arange(h), np.arange(w)).astype(np.uint8)  # compressible, unlike pure noise
        a = np.stack([smooth, rng.integers(0, 256, (h, w), dtype=np.uint8), 255 - smooth, smooth // 2], -1)
        img = Image.fromarray(a, "RGBA").convert(mode) if mode != "I;16" else Image.fromarray(
            smooth.astype(np.uint16) * 257, "I;16")
        data = encode_png(img)
        back = Image.open(io.BytesIO(data))
        back.load()  # decoding checks the zlib stream, its checksum and every chunk CRC
        assert back.mode == img.mode and back.size == img.size
        assert np.array_equal(np.asarray(back), np.asarray(img)), (mode, w, h)
