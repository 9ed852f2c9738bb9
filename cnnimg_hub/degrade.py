"""Degradations shared by training, evaluation and the app's "degrade, then restore" mode: downscaling by several
methods (PIL bicubic with antialiasing, OpenCV cubic/linear/area without it, Lanczos, blur then decimate, JPEG),
additive Gaussian noise and free-form hole masks, each reproducible from a seed."""
from __future__ import annotations

import math
import random

import io

import numpy as np
from PIL import Image, ImageDraw


# How a low-resolution image can have been made. Real uploads are rarely PIL-bicubic: an SR model trained on one
# method only is worse than plain bicubic on the others.
DOWNSAMPLERS = ("pil-bicubic", "cv2-cubic", "cv2-linear", "cv2-area", "pil-lanczos", "gaussian-decimate")
DOWNSAMPLER_NAMES = {"pil-bicubic": "PIL bicubic (antialiased)", "cv2-cubic": "OpenCV cubic (aliased)",
                     "cv2-linear": "OpenCV bilinear (aliased)", "cv2-area": "OpenCV area (block average)",
                     "pil-lanczos": "PIL Lanczos (antialiased)", "gaussian-decimate": "Gaussian blur, then decimate"}


def downsample(image: np.ndarray, scale: int, method: str = "pil-bicubic", blur: float = 0.0) -> np.ndarray:
    """HWC uint8 -> HWC uint8 of size (h // scale, w // scale) by `method` (one of DOWNSAMPLERS).

    "pil-*" antialias (PIL widens the kernel by the scale); "cv2-cubic" and "cv2-linear" do not (OpenCV's
    INTER_CUBIC / INTER_LINEAR sample the source, so the result aliases); "cv2-area" averages blocks;
    "gaussian-decimate" blurs with std `blur` (0 = 0.4 * scale) then samples at the LR pixel centres (bilinear).
    """
    import cv2

    h, w = image.shape[0] // scale, image.shape[1] // scale
    if method in ("pil-bicubic", "pil-lanczos"):
        kind = Image.BICUBIC if method == "pil-bicubic" else Image.LANCZOS
        return np.asarray(Image.fromarray(image).resize((w, h), kind))
    if method in ("cv2-cubic", "cv2-linear", "cv2-area"):
        flag = {"cv2-cubic": cv2.INTER_CUBIC, "cv2-linear": cv2.INTER_LINEAR, "cv2-area": cv2.INTER_AREA}[method]
        out = cv2.resize(image, (w, h), interpolation=flag)
        return out if out.ndim == image.ndim else out[..., None]
    if method == "gaussian-decimate":
        sigma = blur or 0.4 * scale
        blurred = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        out = cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)  # centres: same alignment as the others
        return out if out.ndim == image.ndim else out[..., None]
    raise ValueError(f"unknown downsampler {method!r}; one of {', '.join(DOWNSAMPLERS)}")


def downscale(image: Image.Image, scale: int, method: str = "pil-bicubic") -> Image.Image:
    """A PIL image (L, LA, RGB or RGBA; other modes become RGB or RGBA) downscaled by an integer factor (size
    floored) with `method`, one of DOWNSAMPLERS; alpha goes through the same method as the colors."""
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    if image.width < scale or image.height < scale:
        raise ValueError(f"a {image.width}x{image.height} image is smaller than the scale ({scale}); use a bigger one")
    return Image.fromarray(downsample(np.asarray(image), scale, method))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through PIL's JPEG encoder at `quality` (HWC uint8 RGB)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def add_noise(clean: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Additive white Gaussian noise (0-255 scale), fixed seed, clipped and quantised to uint8."""
    a = np.asarray(clean, dtype=np.float64)
    noise = np.random.default_rng(seed).normal(0.0, sigma, a.shape)
    return Image.fromarray(np.clip(a + noise + 0.5, 0, 255).astype(np.uint8))


def random_mask(h: int, w: int, rng: random.Random, coverage: tuple[float, float] = (0.1, 0.4)) -> np.ndarray:
    """Free-form brush strokes plus boxes, 1 = hole, until the hole covers a random fraction in `coverage`."""
    target = rng.uniform(*coverage)
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(64):
        if np.asarray(img).mean() / 255.0 >= target:
            break
        if rng.random() < 0.3:  # a box
            bw, bh = rng.randint(w // 10, w // 3), rng.randint(h // 10, h // 3)
            x, y = rng.randint(0, w - bw), rng.randint(0, h - bh)
            draw.rectangle([x, y, x + bw, y + bh], fill=255)
        else:  # a brush stroke of a few segments
            x, y = rng.randint(0, w - 1), rng.randint(0, h - 1)
            width = rng.randint(max(2, w // 40), max(3, w // 12))
            for _ in range(rng.randint(2, 6)):
                angle, length = rng.uniform(0, 2 * math.pi), rng.randint(w // 10, w // 3)
                nx = int(np.clip(x + length * math.cos(angle), 0, w - 1))
                ny = int(np.clip(y + length * math.sin(angle), 0, h - 1))
                draw.line([x, y, nx, ny], fill=255, width=width)
                draw.ellipse([nx - width // 2, ny - width // 2, nx + width // 2, ny + width // 2], fill=255)
                x, y = nx, ny
    return (np.asarray(img) > 127).astype(np.float32)
