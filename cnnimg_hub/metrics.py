"""Image quality metrics as the SR and denoising literature computes them.

PSNR and SSIM take float arrays in [0, 1] shaped (H, W) or (H, W, C). For super-resolution, papers measure on
the luma (Y of ITU-R BT.601 YCbCr, range 16-235) with `border` pixels (= scale) cropped: use `y_channel=True`.
SSIM follows Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03), averaged over channels.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def to_float(image: Image.Image | np.ndarray) -> np.ndarray:
    """PIL image or uint8/uint16/float array -> float64 array in [0, 1], (H, W) or (H, W, C)."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    return a.astype(np.float64)


def rgb_to_y(a: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 1] (16/255 .. 235/255), as MATLAB's rgb2ycbcr and the SR papers."""
    if a.ndim == 2:
        return a
    return (16.0 + 65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _prepare(a, b, border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_float(a), to_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    if border and min(a.shape[:2]) > 2 * border:  # images too small to lose the border are measured whole
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    return a, b


def psnr(a, b, *, border: int = 0, y_channel: bool = False, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (or uint8 / PIL); with `mask` (H, W, nonzero =
    counted), over those pixels only (e.g. an inpainting hole)."""
    a, b = _prepare(a, b, border, y_channel)
    sq = (a - b) ** 2
    mse = float(np.mean(sq if mask is None else sq[np.asarray(mask) > 0]))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(a, b, *, border: int = 0, y_channel: bool = False, mask: np.ndarray | None = None) -> float:
    """Structural similarity (Gaussian window), mean over pixels and channels; with `mask` (H, W, nonzero =
    counted), the SSIM map is averaged over those pixels only (the 5 px frame is kept then)."""
    a, b = _prepare(a, b, border, y_channel)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5)  # noqa: E731  (11x11 window)
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        if mask is not None:
            vals.append(m[np.asarray(mask) > 0].mean())
        else:
            vals.append(m[5:-5, 5:-5].mean() if min(m.shape) > 10 else m.mean())
    return float(np.mean(vals))
