"""The project's evaluation: quality of each task on its validation set, against the classical baselines.

Used by the training scripts (numbers written into each model card) and by the benchmark command that prints
every quality table from the shipped weights::

    python -m benchmarks.run --only quality [--quick]

SR: PSNR/SSIM on the Y channel with `scale` pixels of border cropped, HR mod-cropped to the scale, LR made with
PIL bicubic (or the MATLAB-bicubic LR files in sr-lr-matlab/). Denoising: PSNR/SSIM on RGB of CBSD68 with
Gaussian noise of a fixed seed, clipped to [0, 255] and quantised to uint8 as in the literature's test scripts.
Inpainting: PSNR/SSIM over the whole image on 256x256 center crops of BSD100 with fixed-seed masks.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import baselines, degrade
from .degrade import add_noise, random_mask
from .imageio import IMAGE_SUFFIXES, to_image, to_tensor
from .metrics import psnr, ssim
from .spec import spec_of
from .tiling import pad_to_multiple



def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _padded_call(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W up to `multiple` (reflect, as the pipelines do), run, crop back."""
    padded, (h, w) = pad_to_multiple(x, multiple)
    return fn(padded)[..., :h, :w]


def _multiple(model) -> int:
    """The size multiple the model needs (its config's multiple_of)."""
    return spec_of(model).multiple_of or 1


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


# ----------------------------------------------------------------------------------------------- super-resolution
@torch.inference_mode()
def eval_sr(model, data: Path, sets=("Set5", "Set14", "BSD100"), lr_source: str = "pil",
            max_images: int | None = None) -> dict[str, dict]:
    """{set: {psnr, ssim, bicubic_psnr, bicubic_ssim, images}} for `model.scale`.

    lr_source "pil": LR = PIL bicubic of the mod-cropped HR; "matlab": LR from data/sr-lr-matlab/<set>/x<scale>;
    any name in `degrade.DOWNSAMPLERS` ("cv2-cubic", "cv2-area", ...): LR made by that method.
    """
    if lr_source not in ("pil", "matlab", *degrade.DOWNSAMPLERS):
        raise ValueError(f"lr_source must be pil, matlab or one of {degrade.DOWNSAMPLERS}, got {lr_source!r}")
    s = model.scale
    device = next(model.parameters()).device
    out = {}
    for name in sets:
        rows = []
        files = list_images(data / "val" / name)
        lr_files = list_images(data / "sr-lr-matlab" / name / f"x{s}") if lr_source == "matlab" else files
        if len(lr_files) != len(files):
            raise FileNotFoundError(f"{name}: {len(files)} HR images but {len(lr_files)} MATLAB LR files")
        for f, lr_file in list(zip(files, lr_files))[:max_images]:
            hr = Image.open(f).convert("RGB")
            hr = hr.crop((0, 0, hr.width - hr.width % s, hr.height - hr.height % s))
            if lr_source == "matlab":  # SelfExSR names them img_001_SRF_2_LR.png ... in the HR files' sorted order
                lr = Image.open(lr_file).convert("RGB")
                if (lr.width * s, lr.height * s) != hr.size:
                    raise ValueError(f"{lr_file} ({lr.size}) is not {f.name} ({hr.size}) downscaled by {s}")
            elif lr_source == "pil":
                lr = hr.resize((hr.width // s, hr.height // s), Image.BICUBIC)
            else:
                lr = Image.fromarray(degrade.downsample(np.asarray(hr), s, lr_source))
            sr = to_image(model(to_tensor(lr).to(device)))
            bic = lr.resize(hr.size, Image.BICUBIC)
            rows.append({"psnr": psnr(sr, hr, border=s, y_channel=True), "ssim": ssim(sr, hr, border=s, y_channel=True),
                         "bicubic_psnr": psnr(bic, hr, border=s, y_channel=True),
                         "bicubic_ssim": ssim(bic, hr, border=s, y_channel=True)})
        out[name] = {**_mean(rows), "images": len(rows)}
    return out


# ----------------------------------------------------------------------------------------------- denoising
@torch.inference_mode()
def eval_denoise(model, data: Path, sigmas=(15, 25, 50), set_name: str = "CBSD68", baseline_names=("bm3d", "nlm"),
                 max_images: int | None = None, seed: int = 0) -> dict[str, dict]:
    """{f"sigma{σ}": {psnr, ssim, <baseline>_psnr, <baseline>_ssim, seconds, <baseline>_seconds, images}}."""
    device = next(model.parameters()).device
    files = list_images(data / "val" / set_name)[:max_images]
    out = {}
    for sigma in sigmas:
        rows = []
        for i, f in enumerate(files):
            clean = Image.open(f).convert("RGB")
            noisy = add_noise(clean, sigma, seed + i)
            t0 = time.perf_counter()
            den = to_image(_padded_call(lambda x: model(x, float(sigma)), to_tensor(noisy).to(device),
                                        _multiple(model)))
            row = {"psnr": psnr(den, clean), "ssim": ssim(den, clean), "seconds": time.perf_counter() - t0}
            for b in baseline_names:
                t0 = time.perf_counter()
                res = baselines.bm3d_denoise(noisy, sigma) if b == "bm3d" else baselines.nlm_denoise(noisy, sigma)
                row.update({f"{b}_psnr": psnr(res, clean), f"{b}_ssim": ssim(res, clean),
                            f"{b}_seconds": time.perf_counter() - t0})
            rows.append(row)
        out[f"sigma{sigma}"] = {**_mean(rows), "images": len(rows)}
    return out


# ----------------------------------------------------------------------------------------------- inpainting
def eval_masks(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """The fixed masks of the inpainting evaluation (10-40% holes, strokes and boxes), same for every method."""
    rng = random.Random(seed)
    return [random_mask(size, size, rng) for _ in range(n)]


@torch.inference_mode()
def eval_inpaint(model, data: Path, set_name: str = "BSD100", size: int = 256, baseline_names=("telea", "ns"),
                 max_images: int | None = None, seed: int = 0) -> dict[str, dict]:
    device = next(model.parameters()).device
    files = list_images(data / "val" / set_name)[:max_images]
    masks = eval_masks(len(files), size, seed)
    rows = []
    for f, m in zip(files, masks):
        img = Image.open(f).convert("RGB")
        left, top = (img.width - size) // 2, (img.height - size) // 2
        clean = img.crop((left, top, left + size, top + size))
        mask_t = torch.from_numpy(m)[None, None].to(device)
        out = to_image(model(to_tensor(clean).to(device), mask_t))
        row = {"psnr": psnr(out, clean), "ssim": ssim(out, clean), "hole_psnr": psnr(out, clean, mask=m),
               "hole_ssim": ssim(out, clean, mask=m), "hole_fraction": float(m.mean())}
        mask_img = Image.fromarray((m * 255).astype(np.uint8))
        holed = Image.fromarray((np.asarray(clean) * (1 - m[..., None])).astype(np.uint8))
        for b in baseline_names:
            res = baselines.telea(holed, mask_img) if b == "telea" else baselines.navier_stokes(holed, mask_img)
            row.update({f"{b}_psnr": psnr(res, clean), f"{b}_ssim": ssim(res, clean),
                        f"{b}_hole_psnr": psnr(res, clean, mask=m), f"{b}_hole_ssim": ssim(res, clean, mask=m)})
        rows.append(row)
    return {set_name: {**_mean(rows), "images": len(rows)}}


# ----------------------------------------------------------------------------------------------- classification
@torch.inference_mode()
def eval_classifier(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500,
                    tta: int = 0) -> dict[str, float]:
    """Top-1 and top-5 accuracy of uint8 (N, C, H, W) images. Test-time augmentation: tta=1 averages the logits
    with the mirrored image's, tta=2 also with the mirrored pair shifted by one pixel both ways (airbench)."""
    device = next(model.parameters()).device
    correct1 = correct5 = 0

    def mirrored(x):
        return model(x) + model(x.flip(-1)) if tta else model(x)

    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).float() / 255.0
        logits = mirrored(x)
        if tta >= 2:
            h, w = x.shape[2:]
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            shifted = mirrored(padded[:, :, :h, :w]) + mirrored(padded[:, :, 2:, 2:])
            logits = logits + shifted / 2
        y = labels[i:i + batch_size].to(device)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(1).sum().item()
    return {"top1": correct1 / len(images), "top5": correct5 / len(images), "images": len(images)}


# ----------------------------------------------------------------------------------------------- generation
def _fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _spread(feats: torch.Tensor, max_n: int = 500) -> float:
    """Mean pairwise Euclidean distance between feature vectors (the first `max_n`)."""
    f = feats[:max_n].float()
    d = torch.cdist(f, f)
    return float(d.sum() / max(1, len(f) * (len(f) - 1)))


@torch.inference_mode()
def eval_generator(model, judge, test_images: torch.Tensor, n: int = 10000, seed: int = 0,
                   batch_size: int = 500, test_labels: torch.Tensor | None = None) -> dict[str, float]:
    """Class agreement of a held-out classifier (`judge`) with the requested class over `n` samples (classes
    balanced), and FID in the judge's feature space between the samples and the test set.

    With `test_labels`, also diversity: within each class, the mean pairwise distance of the samples' judge
    features over that of the real test images of the class (1.0 = as varied as the real images; a collapsed
    generator scores near 0); reported as the mean and the lowest class, with both sides' spreads."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % model.num_classes
    agree, feats = 0, []
    for i in range(0, n, batch_size):
        y = labels[i:i + batch_size]
        x = model.generate(y, generator=gen)
        agree += (judge(x).argmax(1).cpu() == y).sum().item()
        feats.append(judge.features(x).float().cpu())
    real = torch.cat([judge.features(test_images[i:i + batch_size].to(device).float() / 255.0).float().cpu()
                      for i in range(0, len(test_images), batch_size)])
    fake = torch.cat(feats)
    out = {"class_agreement": agree / n, "fid_judge": _fid(fake.numpy(), real.numpy()), "samples": n}
    if test_labels is not None:
        classes = [c for c in range(model.num_classes) if (test_labels == c).sum() > 1 and (labels == c).sum() > 1]
        gen_spread = [_spread(fake[labels == c]) for c in classes]
        real_spread = [_spread(real[test_labels.cpu() == c]) for c in classes]
        ratios = [g / r for g, r in zip(gen_spread, real_spread)]
        out.update(diversity=float(np.mean(ratios)), diversity_min=float(np.min(ratios)),
                   spread_samples=float(np.mean(gen_spread)), spread_real=float(np.mean(real_spread)))
    return out
