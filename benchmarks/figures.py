"""README figures from the shipped weights, on photos from examples/ (never a training or validation image):
each restoration model beside the classical method it should beat, PSNR against the original in the labels.

    python -m benchmarks.figures [--weights weights] [--out docs/figures]

- inpaint.png: the photo, the holes (strokes and a box), the CNN's fill, OpenCV Telea's fill;
- denoise.png: sigma-25 noise, the CNN, BM3D;
- super-resolution.png: a 4x smaller copy made with OpenCV INTER_CUBIC (no antialiasing, as many tools do),
  bicubic upscaling, the CNN;
- generate-<gan|vae>.png: each class (rows) at 8 seeds (columns), and interp-<gan|vae>.png: latent
  interpolation strips (slerp between two seeds, whole 28x28 frames) for three classes.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cnnimg_hub import baselines, degrade, load_model, pipelines
from cnnimg_hub.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
LABEL_H = 22


def _panel(images: list[tuple[str, Image.Image]]) -> Image.Image:
    """Images side by side, 4 px apart, each with its label above it."""
    w, h = images[0][1].size
    out = Image.new("RGB", (len(images) * (w + 4) - 4, h + LABEL_H), "white")
    draw = ImageDraw.Draw(out)
    for i, (label, im) in enumerate(images):
        out.paste(im.convert("RGB"), (i * (w + 4), LABEL_H))
        draw.text((i * (w + 4) + 4, 5), label, fill="black")
    return out


def _crop(name: str, size: int) -> Image.Image:
    img = Image.open(ROOT / "examples" / name).convert("RGB")
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((left, top, left + size, top + size))


def inpaint_figure(model, out: Path) -> None:
    clean = _crop("chelsea.jpg", 256)
    m = degrade.random_mask(256, 256, random.Random(7), coverage=(0.2, 0.25))
    m[150:200, 30:90] = 1  # and a box
    mask = Image.fromarray((m * 255).astype(np.uint8))
    holed = Image.fromarray((np.asarray(clean) * (1 - m[..., None])).astype(np.uint8))
    cnn, _ = pipelines.inpaint(model, clean, mask)
    telea = baselines.telea(holed, mask)
    _panel([("original", clean), (f"holes ({m.mean():.0%})", holed), (f"CNN {psnr(cnn, clean):.2f} dB", cnn),
            (f"OpenCV Telea {psnr(telea, clean):.2f} dB", telea)]).save(out / "inpaint.png")


def denoise_figure(model, out: Path) -> None:
    clean = _crop("coffee.jpg", 256)
    noisy = degrade.add_noise(clean, 25, 0)
    cnn, _ = pipelines.denoise(model, noisy)  # blind: the noise level is estimated
    bm3d = baselines.bm3d_denoise(noisy, 25)
    _panel([("original", clean), (f"noise sigma 25 {psnr(noisy, clean):.2f} dB", noisy),
            (f"CNN (blind) {psnr(cnn, clean):.2f} dB", cnn), (f"BM3D (sigma given) {psnr(bm3d, clean):.2f} dB", bm3d)]
           ).save(out / "denoise.png")


def sr_figure(model, out: Path) -> None:
    clean = _crop("astronaut.jpg", 256)
    lr = Image.fromarray(degrade.downsample(np.asarray(clean), 4, "cv2-cubic"))
    cnn, _ = pipelines.upscale(model, lr)
    bic = lr.resize(clean.size, Image.BICUBIC)
    _panel([("original", clean), ("OpenCV INTER_CUBIC x1/4", lr.resize(clean.size, Image.NEAREST)),
            (f"bicubic {psnr(bic, clean, y_channel=True):.2f} dB", bic),
            (f"CNN {psnr(cnn, clean, y_channel=True):.2f} dB", cnn)]).save(out / "super-resolution.png")


def _grid(rows: list[tuple[str, list[Image.Image]]], zoom: int = 2, label_w: int = 84) -> Image.Image:
    """Rows of equal-size images (scaled up `zoom` times, nearest), each row labelled on its left."""
    w, h = (zoom * d for d in rows[0][1][0].size)
    cols = max(len(ims) for _, ims in rows)
    out = Image.new("RGB", (label_w + cols * (w + 2), len(rows) * (h + 2)), "white")
    draw = ImageDraw.Draw(out)
    for r, (label, ims) in enumerate(rows):
        draw.text((4, r * (h + 2) + h // 2 - 6), label, fill="black")
        for c, im in enumerate(ims):
            out.paste(im.convert("RGB").resize((w, h), Image.NEAREST), (label_w + c * (w + 2), r * (h + 2)))
    return out


def generator_figures(model, out: Path, name: str) -> None:
    names = model.label_names
    rows = [(names[c], pipelines.generate(model, c, num_images=8, seed=100 + c)[0]) for c in range(len(names))]
    _grid(rows).save(out / f"generate-{name}.png")
    strips = [(f"{names[c]} {a}->{b}", pipelines.interpolate(model, c, a, b, steps=10)[0])
              for c, a, b in ((0, 1, 2), (7, 3, 4), (9, 5, 6))]
    _grid(strips, label_w=130).save(out / f"interp-{name}.png")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = Path(args.weights)
    inpaint_figure(load_model(weights / "inpaint"), out)
    denoise_figure(load_model(weights / "denoise"), out)
    sr_figure(load_model(weights / "sr-x4"), out)
    for kind in ("gan", "vae"):
        generator_figures(load_model(weights / f"generate-fashion-mnist-{kind}"), out, kind)
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.png')))} to {out}")


if __name__ == "__main__":
    main()
