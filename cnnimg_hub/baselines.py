"""Classical baselines the CNNs are compared against: PIL bicubic/Lanczos upscaling, BM3D and OpenCV non-local
means denoising, OpenCV Telea and Navier-Stokes inpainting. All take and return PIL images (RGB or L).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import ImageInputError


def bicubic(image: Image.Image, scale: float) -> Image.Image:
    """PIL bicubic resize by `scale` (the LR inputs of our SR evaluation are made the same way, scale < 1)."""
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)


def lanczos(image: Image.Image, scale: float) -> Image.Image:
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)


def bm3d_denoise(image: Image.Image, sigma: float) -> Image.Image:
    """BM3D (CBM3D in YCbCr for color) from the `bm3d` package; sigma on the 0-255 scale. Slow: seconds/Mpx."""
    import bm3d

    a = np.asarray(image).astype(np.float32) / 255.0
    if a.ndim == 2:
        out = bm3d.bm3d(a, sigma_psd=sigma / 255.0)
    else:
        out = bm3d.bm3d_rgb(a, sigma_psd=sigma / 255.0)
    return Image.fromarray((np.clip(out, 0, 1) * 255.0 + 0.5).astype(np.uint8))


def nlm_denoise(image: Image.Image, sigma: float) -> Image.Image:
    """OpenCV fast non-local means with the filter strength tied to sigma (h ~ 0.8 sigma works well)."""
    import cv2

    a = np.asarray(image)
    h = max(1.0, 0.8 * float(sigma))
    if a.ndim == 2:
        out = cv2.fastNlMeansDenoising(a, None, h, 7, 21)
    else:
        out = cv2.fastNlMeansDenoisingColored(a, None, h, h, 7, 21)
    return Image.fromarray(out)


def _inpaint(image: Image.Image, mask: Image.Image, radius: int, flag: int) -> Image.Image:
    import cv2

    a = np.asarray(image)
    m = (np.asarray(mask.convert("L")) > 127).astype(np.uint8) * 255
    if m.shape != a.shape[:2]:
        raise ImageInputError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {a.shape[1]}x{a.shape[0]}")
    return Image.fromarray(cv2.inpaint(a, m, radius, flag))


def telea(image: Image.Image, mask: Image.Image, radius: int = 5) -> Image.Image:
    """OpenCV Telea (fast marching) inpainting; mask white = hole."""
    import cv2

    return _inpaint(image, mask, radius, cv2.INPAINT_TELEA)


def navier_stokes(image: Image.Image, mask: Image.Image, radius: int = 5) -> Image.Image:
    """OpenCV Navier-Stokes inpainting; mask white = hole."""
    import cv2

    return _inpaint(image, mask, radius, cv2.INPAINT_NS)
