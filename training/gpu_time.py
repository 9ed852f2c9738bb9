"""Time every restoration pipeline of a weights folder on one device in fp32, fp16 and bf16 (512x512 inputs), and
print a markdown table. Part of training/gpu_burst.sh; runs on a CPU too (fp16 rows are then skipped).

    python training/gpu_time.py --weights weights --device cuda --size 512
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnimg_hub import load_model, pipelines  # noqa: E402
from cnnimg_hub.errors import CnnImgError  # noqa: E402

CALLS = {  # task -> a call of its pipeline on one image
    "super-resolution": lambda m, img, **kw: pipelines.upscale(m, img, **kw),
    "denoising": lambda m, img, **kw: pipelines.denoise(m, img, 25, **kw),
    "inpainting": lambda m, img, **kw: pipelines.inpaint(m, img, _mask(img.size), **kw),
}


def _mask(size: tuple[int, int]) -> Image.Image:
    m = np.zeros(size[::-1], np.uint8)
    m[size[1] // 3:size[1] // 2, size[0] // 4:size[0] // 2] = 255
    return Image.fromarray(m)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="weights")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default="")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    rows = []
    for folder in sorted(Path(args.weights).iterdir()):
        if not (folder / "config.json").is_file():
            continue
        model = load_model(folder)
        call = CALLS.get(model.task)
        if call is None:
            continue
        for precision in ("fp32", "fp16", "bf16"):
            if precision == "fp16" and not args.device.startswith("cuda"):
                continue
            try:
                call(model, image, device=args.device, precision=precision)  # warm-up (and cuDNN autotune)
                _sync(args.device)
                t0 = time.perf_counter()
                for _ in range(args.repeats):
                    _, info = call(model, image, device=args.device, precision=precision)
                _sync(args.device)
                rows.append({"model": folder.name, "precision": precision, "dtype": info.dtype,
                             "seconds": (time.perf_counter() - t0) / args.repeats})
            except (CnnImgError, RuntimeError) as e:
                rows.append({"model": folder.name, "precision": precision, "error": str(e)[:200]})
    print(f"| model | precision | ran as | seconds ({args.size}x{args.size}, {args.device}) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r.get('dtype', 'error')} | "
              f"{r['seconds']:.4f} |" if "seconds" in r else f"| {r['model']} | {r['precision']} | error | "
              f"{r['error']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
