"""Train a super-resolution model (ESPCN-class light or EDSR-class large) on T91 + BSD200 + General100-50
(+ BSDS500-test), evaluate on Set5/Set14/BSD100 and write a Hub-ready folder.

    python training/train_sr.py --scale 2 --out weights/sr-x2
    python training/train_sr.py --model sr-edsr-small --scale 4 --out weights/sr-x4-large --steps 3000
    accelerate launch training/train_sr.py ...            # one or many GPUs, bf16
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

import common
from cnnimg_hub import create_model
from cnnimg_hub.evaluate import eval_sr


@dataclasses.dataclass
class Config:
    """Super-resolution training."""
    # model
    model: str = "sr-espcn"  # registered name: sr-espcn, sr-edsr-small, sr-edsr-baseline
    scale: int = 4  # 2, 3 or 4
    # data
    data: str = str(common.DATA)  # datasets root (train/ is used, val/ only for evaluation)
    train_sets: list = dataclasses.field(default_factory=lambda: ["T91", "BSD200", "General100-50", "BSDS500-test"])
    lr_patch: int = 32  # low-resolution patch side; HR patches are lr_patch * scale
    aug_scales: list = dataclasses.field(default_factory=lambda: [1.0, 0.8, 0.6])  # rescaled copies of each image
    # optimisation
    steps: int = 10000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 200
    seed: int = 0
    threads: int = 0  # torch CPU threads, 0 = torch's default
    mixed_precision: str = "bf16"  # used on GPU only: no, fp16, bf16
    # bookkeeping
    eval_every: int = 1000  # steps between Set5 checks
    ckpt_every: int = 500
    out: str = "weights/sr-x4"  # Hub-ready folder
    run_dir: str = ""  # checkpoints and logs; default runs/<out folder name>
    resume: bool = False
    eval_max_images: int = 0  # 0 = all images of each validation set (smoke tests use fewer)
    push_to_hub: str = ""  # user/name to upload the folder to at the end


def main(cfg: Config) -> None:
    acc, run_dir, log = common.setup(cfg)
    data = Path(cfg.data)

    files = common.list_images([data / "train" / s for s in cfg.train_sets])
    dataset = common.PatchDataset(files, cfg.lr_patch * cfg.scale, cfg.steps * cfg.batch_size,
                                  scales=tuple(cfg.aug_scales))
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, drop_last=True)
    model = create_model(cfg.model, scale=cfg.scale)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = common.cosine_schedule(opt, cfg.steps, cfg.warmup)
    ckpt = run_dir / "checkpoint.pt"
    step = common.resume(ckpt, log, cfg.seed, model=model, opt=opt, sched=sched) if cfg.resume else 0
    model, opt, loader = acc.prepare(model, opt, loader)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="start", model=cfg.model, scale=cfg.scale, params=n_params, images=len(files), device=str(acc.device))

    model.train()
    loop = common.StepLoop(acc, model, opt, sched, steps=cfg.steps, start=step, log=log, ckpt=ckpt,
                           ckpt_every=cfg.ckpt_every, desc=f"{cfg.model} x{cfg.scale}")
    for hr in loader:
        if loop.done:
            break
        lr_img = common.bicubic_down(hr.cpu(), cfg.scale).to(hr.device)
        with acc.autocast():
            loss = F.l1_loss(model(lr_img), hr)
        step = loop.update(loss)
        if acc.is_main_process and step % cfg.eval_every == 0:
            net = acc.unwrap_model(model).eval()
            set5 = eval_sr(net, data, sets=("Set5",), max_images=cfg.eval_max_images or None)["Set5"]
            log(step=step, set5_psnr=set5["psnr"], set5_bicubic_psnr=set5["bicubic_psnr"])
            model.train()
    loop.close()

    if not acc.is_main_process:
        return
    net = acc.unwrap_model(model).eval().cpu()
    limit = cfg.eval_max_images or None
    results = eval_sr(net, data, max_images=limit)
    results.update({f"{k} (MATLAB LR)": v for k, v in
                    eval_sr(net, data, sets=("Set5", "Set14"), lr_source="matlab", max_images=limit).items()})
    for name, r in results.items():
        log(eval=name, psnr=r["psnr"], ssim=r["ssim"], bicubic_psnr=r["bicubic_psnr"])
    evals = []
    for name, r in results.items():
        for metric in ("psnr", "ssim"):
            evals.append({"dataset_name": name, "metric_type": metric, "metric_value": round(r[metric], 4),
                          "metric_name": f"{metric.upper()} (Y, x{cfg.scale})"})
    common.finish(net, Path(cfg.out), run_dir, cfg, eval_results=evals, datasets=cfg.train_sets,
                  metrics={"params": n_params, **results}, push_to_hub=cfg.push_to_hub)


if __name__ == "__main__":
    main(common.parse_config(Config))
