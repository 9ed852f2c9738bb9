"""fp32 against bf16: each model's quality on its validation set in both precisions, and the decision in its
config.json that makes `precision="auto"` run it in bf16 on CPUs with native bf16.

    python -m benchmarks.precision weights/* [--write] [--data ../shared/datasets] [--max-images N]
                                             [--samples 10000] [--judge weights/classify-fashion-mnist]

Each model runs on the same inputs twice: in float32, and under bf16 autocast as the pipelines run it (channels
last). The metric is the one of its quality table: super-resolution PSNR on Y of Set5, Set14 and BSD100 (PIL
bicubic LR); denoising CBSD68 PSNR at sigma 15, 25 and 50; inpainting PSNR of BSD100 256 px crops; classifiers
test-split top-1; generators the class agreement of the Fashion-MNIST classifier (itself in float32) on --samples
samples. The change is bf16 minus fp32 on the set (or noise level) where bf16 does worst. A model runs in bf16 by
default when it loses at most PSNR_TOLERANCE dB or ACCURACY_TOLERANCE points there.

With --write the decision goes into each folder's config.json: "precision" ("bf16" or "fp32") and the measurement
as "precision_check" (see `InferenceSpec`); the file is rewritten atomically, the weights and card are not
touched. On a CPU without native bf16 the measurement runs too (emulated, slower); the decision only matters where
bf16 is native. Missing data sets skip a model with a note.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cnnimg_hub
from cnnimg_hub import evaluate
from cnnimg_hub._files import atomic_write
from cnnimg_hub._hub import read_config

from ._measure import ROOT

# ----------------------------------------------------------------------------------------------- settings
PSNR_TOLERANCE = 0.05  # dB: the most PSNR a model may lose in bf16 and still run in it by default
ACCURACY_TOLERANCE = 0.1  # points (percent) of top-1 or class agreement
SR_SETS = ("Set5", "Set14", "BSD100")
DENOISE_SIGMAS = (15, 25, 50)
GENERATE_SAMPLES = 10000


@contextlib.contextmanager
def running_in(model: nn.Module, dtype: torch.dtype):
    """`model`'s calls (forward; decode_latent for generators) under autocast to `dtype` in channels_last, their
    outputs back in float32: what the pipelines run. float32 leaves the model as it is."""
    if dtype == torch.float32:
        yield model
        return
    name = "decode_latent" if model.task == "image-generation" else "forward"
    inner = getattr(model, name)

    @functools.wraps(inner)
    def call(x, *args, **kwargs):
        x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            return inner(x, *args, **kwargs).float()

    model.to(memory_format=torch.channels_last)
    setattr(model, name, call)  # an instance attribute: shadows the class's method until deleted
    try:
        yield model
    finally:
        delattr(model, name)


def _worst(per_set: dict[str, tuple[float, float]]) -> tuple[str, float, float]:
    """(set, fp32, bf16) of the set where bf16 does worst against fp32."""
    name = min(per_set, key=lambda k: per_set[k][1] - per_set[k][0])
    return (name, *per_set[name])


def _training_common():
    sys.path.insert(0, str(ROOT / "training"))
    import common  # noqa: PLC0415  (the training scripts' data loaders)

    return common


def _fashion_mnist_test(data: Path):
    common = _training_common()
    root = data / "fashion-mnist"
    return common.fashion_mnist("test", root if root.is_dir() else None)


def compare_model(model: nn.Module, data: Path, *, max_images: int | None = None, samples: int = GENERATE_SAMPLES,
                  judge: nn.Module | None = None) -> dict[str, Any]:
    """The precision check of one model: {"metric", "fp32", "bf16", "change", "tolerance", "data", "ok"}, or
    {"skipped": why}. Runs on the CPU."""
    task, val = model.task, data / "val"
    scores: dict[str, dict[str, tuple[float, ...]]] = {}

    def both(fn) -> dict[str, tuple[float, float]]:
        runs = {}
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            with running_in(model, dtype):
                runs[label] = fn()
        return {k: (runs["fp32"][k], runs["bf16"][k]) for k in runs["fp32"]}

    if task == "super-resolution":
        sets = [s for s in SR_SETS if (val / s).is_dir()]
        if not sets:
            return {"skipped": f"no {', '.join(SR_SETS)} under {val}"}
        per = both(lambda: {k: r["psnr"] for k, r in evaluate.eval_sr(model, data, sets=sets,
                                                                       max_images=max_images).items()})
        metric, tolerance, what = "PSNR (dB, Y)", PSNR_TOLERANCE, f"{'+'.join(sets)}, PIL bicubic LR"
    elif task == "denoising":
        if not (val / "CBSD68").is_dir():
            return {"skipped": f"no CBSD68 under {val}"}
        per = both(lambda: {k: r["psnr"] for k, r in evaluate.eval_denoise(
            model, data, sigmas=DENOISE_SIGMAS, baseline_names=(), max_images=max_images).items()})
        metric, tolerance, what = "PSNR (dB)", PSNR_TOLERANCE, f"CBSD68, sigma {'/'.join(map(str, DENOISE_SIGMAS))}"
    elif task == "inpainting":
        if not (val / "BSD100").is_dir():
            return {"skipped": f"no BSD100 under {val}"}
        per = both(lambda: {k: r["psnr"] for k, r in evaluate.eval_inpaint(
            model, data, baseline_names=(), max_images=max_images).items()})
        metric, tolerance, what = "PSNR (dB)", PSNR_TOLERANCE, "BSD100 256 px crops"
    elif task == "image-classification":
        try:
            if model.in_channels == 1:
                images, labels = _fashion_mnist_test(data)
                what = "Fashion-MNIST test"
            else:
                images, labels = _training_common().cifar10("test", archive=data / "cifar10-jpg.tar.gz")[:2]
                what = "CIFAR-10 test"
        except (SystemExit, OSError) as e:
            return {"skipped": f"test split unavailable ({e})"}
        if max_images:  # evenly spread over the split (the test archives are sorted by class)
            step = max(1, len(images) // max_images)
            images, labels = images[::step][:max_images], labels[::step][:max_images]
        per = both(lambda: {"top1": 100 * evaluate.eval_classifier(model, images, labels)["top1"]})
        metric, tolerance, what = "top-1 (%)", ACCURACY_TOLERANCE, f"{what}, {len(images)} images"
    elif task == "image-generation":
        if judge is None:
            return {"skipped": "needs the Fashion-MNIST classifier as judge (--judge)"}
        try:
            test_images, _ = _fashion_mnist_test(data)
        except (SystemExit, OSError) as e:
            return {"skipped": f"Fashion-MNIST test split unavailable ({e})"}
        per = both(lambda: {"agreement": 100 * evaluate.eval_generator(
            model, judge, test_images[:1000], n=samples)["class_agreement"]})
        metric, tolerance, what = "class agreement (%)", ACCURACY_TOLERANCE, f"{samples} samples, judge in fp32"
    else:
        return {"skipped": f"no precision check for task {task!r}"}
    where, fp32, bf16 = _worst(per)
    change = bf16 - fp32
    data_text = what + (f", first {max_images} images" if max_images and task not in (
        "image-classification", "image-generation") else "") + (f"; worst: {where}" if len(per) > 1 else "")
    return {"metric": metric, "fp32": round(fp32, 4), "bf16": round(bf16, 4), "change": round(change, 4),
            "tolerance": tolerance, "data": data_text, "ok": change >= -tolerance}


def write_decision(folder: Path, check: dict[str, Any]) -> dict[str, Any]:
    """config.json of `folder` with "precision" and "precision_check" set from `check`, written atomically."""
    config = read_config(folder)
    config["precision"] = "bf16" if check["ok"] else "fp32"
    config["precision_check"] = {k: check[k] for k in ("metric", "fp32", "bf16", "change", "tolerance", "data")}
    atomic_write(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    cnnimg_hub.load_model(folder)  # still loads (strictly) with the new keys
    return config


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | metric | data | fp32 | bf16 | change | tolerance | runs in |", "|" + "---|" * 8]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | skipped: {r['skipped']} | | | | | | fp32 |")
            continue
        lines.append(f"| {r['model']} | {r['metric']} | {r['data']} | {r['fp32']:.2f} | {r['bf16']:.2f} | "
                     f"{r['change']:+.3f} | {r['tolerance']:g} | {'bf16' if r['ok'] else 'fp32'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="model folders, e.g. weights/*")
    p.add_argument("--write", action="store_true", help="record the decision in each folder's config.json")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets", help="datasets root (val/, ...)")
    p.add_argument("--max-images", type=int, default=None, help="first N images per set (default: all)")
    p.add_argument("--samples", type=int, default=GENERATE_SAMPLES, help="generator samples (default 10000)")
    p.add_argument("--judge", type=Path, default=ROOT / "weights" / "classify-fashion-mnist",
                   help="the classifier that judges the generators' classes")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)
    folders = [f for f in args.folders if (f / "config.json").is_file()]
    judge = cnnimg_hub.load_model(args.judge, device="cpu") if (args.judge / "config.json").is_file() else None
    rows = []
    for folder in folders:
        model = cnnimg_hub.load_model(folder, device="cpu")
        check = compare_model(model, args.data, max_images=args.max_images, samples=args.samples, judge=judge)
        rows.append({"model": folder.name, **check})
        print(f"{folder.name}: " + (f"skipped ({check['skipped']})" if "skipped" in check else
                                    f"{check['metric']} fp32 {check['fp32']:.3f}, bf16 {check['bf16']:.3f} "
                                    f"({check['change']:+.3f}): {'bf16' if check['ok'] else 'fp32'}"), flush=True)
        if args.write and "skipped" not in check:
            write_decision(folder, check)
            print(f"  wrote precision {'bf16' if check['ok'] else 'fp32'} into {folder / 'config.json'}", flush=True)
    print("\n" + table(rows))
    if args.json:
        atomic_write(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
