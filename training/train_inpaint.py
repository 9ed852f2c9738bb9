"""Train the gated-convolution U-Net inpainter on train/ sets with free-form + box masks (10-40% holes), evaluate
on 256x256 BSD100 crops with fixed-seed masks against OpenCV Telea and Navier-Stokes, write a Hub-ready folder.

    python training/train_inpaint.py --out weights/inpaint
    accelerate launch training/train_inpaint.py ...
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import common
from cnnimg_hub import create_model
from cnnimg_hub.evaluate import eval_inpaint


@dataclasses.dataclass
class Config:
    """Free-form inpainting training."""
    # model
    model: str = "inpaint-gated-unet"
    base_channels: int = 16  # 16 trains 2x faster than the class default 24 on a CPU
    prefill: str = "none"  # "push-pull": the net refines a smooth pyramid fill (1500 steps: 23.04 dB vs 23.51 without)
    # data
    data: str = str(common.DATA)
    train_sets: list = dataclasses.field(default_factory=lambda: ["BSD200", "BSDS500-test", "T91", "General100-50"])
    patch: int = 128  # crops are 128-256 px: patches of this side from images rescaled by aug_scales
    aug_scales: list = dataclasses.field(default_factory=lambda: [1.0, 0.6])
    hole_weight: float = 18.0  # weight of the mean L1 inside the hole against the mean L1 over the whole image
    # optimisation
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0
    threads: int = 0
    mixed_precision: str = "bf16"
    # bookkeeping
    eval_every: int = 1000  # steps between quick checks (first 10 BSD100 crops)
    ckpt_every: int = 250
    out: str = "weights/inpaint"
    run_dir: str = ""
    resume: bool = False
    eval_max_images: int = 0  # 0 = all 100
    push_to_hub: str = ""


def main(cfg: Config) -> None:
    acc, run_dir, log = common.setup(cfg)
    data = Path(cfg.data)

    files = common.list_images([data / "train" / s for s in cfg.train_sets])
    dataset = common.PatchDataset(files, cfg.patch, cfg.steps * cfg.batch_size, scales=tuple(cfg.aug_scales))
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, drop_last=True)
    model = create_model(cfg.model, base_channels=cfg.base_channels, prefill=cfg.prefill)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = common.cosine_schedule(opt, cfg.steps, cfg.warmup)
    ckpt = run_dir / "checkpoint.pt"
    step = common.resume(ckpt, log, cfg.seed, model=model, opt=opt, sched=sched) if cfg.resume else 0
    mask_rng = random.Random(cfg.seed + 1 + step)  # a resumed run draws new masks, not the first ones again
    model, opt, loader = acc.prepare(model, opt, loader)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="start", model=cfg.model, params=n_params, images=len(files), device=str(acc.device))

    model.train()
    loop = common.StepLoop(acc, model, opt, sched, steps=cfg.steps, start=step, log=log, ckpt=ckpt,
                           ckpt_every=cfg.ckpt_every, desc=cfg.model, log_every=50)
    for clean in loader:
        if loop.done:
            break
        masks = np.stack([common.random_mask(cfg.patch, cfg.patch, mask_rng) for _ in range(len(clean))])
        mask = torch.from_numpy(masks)[:, None].to(clean.device)
        with acc.autocast():
            out = model(clean, mask)
            err = (out - clean).abs()
            hole_l1 = (err * mask).sum() / (mask.sum() * err.shape[1]).clamp(min=1)
            loss = (cfg.hole_weight * hole_l1 + F.l1_loss(out, clean)) / (1 + cfg.hole_weight)
        step = loop.update(loss)
        if acc.is_main_process and step % cfg.eval_every == 0:
            quick = eval_inpaint(acc.unwrap_model(model).eval(), data, max_images=10)["BSD100"]
            log(step=step, bsd100_10_psnr=quick["psnr"], telea_psnr=quick["telea_psnr"])
            model.train()
    loop.close()

    if not acc.is_main_process:
        return
    net = acc.unwrap_model(model).eval().cpu()
    r = eval_inpaint(net, data, max_images=cfg.eval_max_images or None)["BSD100"]
    log(eval="BSD100", **{k: round(v, 4) for k, v in r.items()})
    evals = [{"dataset_name": "BSD100", "metric_type": m, "metric_value": round(r[k], 4), "metric_name": name}
             for m, k, name in [("psnr", "psnr", "PSNR (256px crops, 10-40% holes)"),
                                ("ssim", "ssim", "SSIM (256px crops, 10-40% holes)"),
                                ("psnr", "telea_psnr", "OpenCV Telea PSNR (same masks)"),
                                ("psnr", "ns_psnr", "OpenCV Navier-Stokes PSNR (same masks)")]]
    common.finish(net, Path(cfg.out), run_dir, cfg, eval_results=evals, datasets=cfg.train_sets,
                  metrics={"params": n_params, "BSD100": r}, push_to_hub=cfg.push_to_hub)


if __name__ == "__main__":
    main(common.parse_config(Config))
