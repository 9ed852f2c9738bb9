"""Degradations shared by training, evaluation and the app's "degrade, then restore" mode: bicubic downscaling,
additive Gaussian noise and free-form hole masks, each reproducible from a seed."""
from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw


def bicubic_down(image: Image.Image, scale: int) -> Image.Image:
    """PIL bicubic downscale by an integer factor (size floored), the LR of our SR training and evaluation."""
    return image.resize((max(1, image.width // scale), max(1, image.height // scale)), Image.BICUBIC)


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
