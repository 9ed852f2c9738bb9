"""Train the color denoiser (a DRUNet-style U-Net by default) on train/ sets with Gaussian noise of random level,
evaluate on CBSD68 at sigma 15/25/50 (against non-local means, and BM3D with --eval-bm3d) and write a Hub-ready folder.

    python training/train_denoise.py --out weights/denoise
    python training/train_denoise.py --init-from weights/denoise --out weights/denoise   # continue the shipped one
    accelerate launch training/train_denoise.py ...
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

import common
from cnnimg_hub import create_model
from cnnimg_hub.evaluate import eval_denoise


@dataclasses.dataclass
class Config:
    """Color Gaussian denoising training."""
    # model
    model: str = "denoise-unet"  # registered name: denoise-unet, denoise-ffdnet, denoise-ffdnet-small
    max_sigma: float = 50.0  # training noise levels are uniform in [0, max_sigma] (0-255 scale)
    init_from: str = ""  # start from this saved model (folder or Hub repo id, same architecture), fresh schedule
    # data
    data: str = str(common.DATA)
    train_sets: list = dataclasses.field(default_factory=lambda: ["BSD200", "BSDS500-test", "T91"])
    patch: int = 96
    aug_scales: list = dataclasses.field(default_factory=lambda: [1.0, 0.7])
    # optimisation
    steps: int = 10000  # optimizer steps, whatever the number of processes
    batch_size: int = 16  # per process: the effective batch is batch_size x processes
    lr: float = 5e-4  # AdamW (1e-3 diverged at step 500); the FFDNet stack needs 3e-4
    weight_decay: float = 1e-4
    clip_grad: float = 0.5  # total gradient norm; 1e-3 without clipping diverged at step 500
    minutes: float = 0.0  # wall-clock budget: > 0 ends the run (and its decay) when it is spent
    warmup: int = 300
    loss: str = "l1"  # l1 or mse
    seed: int = 0
    threads: int = 0  # torch CPU threads, 0 = torch's default
    mixed_precision: str = "auto"  # auto (bf16 on GPUs and on CPUs with native bf16, else fp32), no, bf16, fp16
    # bookkeeping
    eval_every: int = 1000  # steps between quick CBSD68 checks (first 8 images, sigma 25)
    ckpt_every: int = 500
    out: str = "weights/denoise"
    run_dir: str = ""  # default runs/<out folder name>
    resume: bool = False
    eval_max_images: int = 0  # 0 = all 68
    eval_bm3d: bool = False  # also run BM3D in the final evaluation (about 10 minutes on 2 cores)
    push_to_hub: str = ""


def noisy_batch(clean: torch.Tensor, max_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image sigma ~ U[0, max_sigma]; noisy images clipped and quantised to 8 bit like real test inputs."""
    sigma = torch.rand(len(clean), device=clean.device) * max_sigma
    noisy = clean + torch.randn_like(clean) * sigma.view(-1, 1, 1, 1) / 255.0
    return (noisy.clamp(0, 1) * 255).round() / 255, sigma


def main(cfg: Config) -> None:
    acc, run_dir, log = common.setup(cfg)
    data = Path(cfg.data)

    files = common.list_images([data / "train" / s for s in cfg.train_sets])
    dataset = common.PatchDataset(files, cfg.patch, cfg.steps * cfg.batch_size * acc.num_processes,
                                  scales=tuple(cfg.aug_scales), seed=cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, drop_last=True)
    model = create_model(cfg.model, max_sigma=cfg.max_sigma)
    lineage = common.init_from(model, cfg.init_from, log) if cfg.init_from else []
    model = model.to(memory_format=torch.channels_last)
    common.rank_seed(acc, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = common.cosine_schedule(opt, cfg.steps, cfg.warmup)
    ckpt = run_dir / "checkpoint.pt"
    step = common.resume(ckpt, log, cfg.seed, model=model, opt=opt, sched=sched) if cfg.resume else 0
    dataset.seed = cfg.seed + step  # fresh crops after a resume
    model, opt, loader = acc.prepare(model, opt, loader)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="start", model=cfg.model, params=n_params, images=len(files), device=str(acc.device))
    loss_fn = F.l1_loss if cfg.loss == "l1" else F.mse_loss

    model.train()
    loop = common.StepLoop(acc, model, opt, sched, steps=cfg.steps, start=step, log=log, ckpt=ckpt,
                           ckpt_every=cfg.ckpt_every, desc=cfg.model, clip_grad=cfg.clip_grad, log_every=100,
                           minutes=cfg.minutes)
    for clean in loop.batches(loader):
        if loop.done:
            break
        clean = clean.contiguous(memory_format=torch.channels_last)
        with loop.preparing():
            noisy, sigma = noisy_batch(clean, cfg.max_sigma)
        with acc.autocast():
            loss = loss_fn(model(noisy, sigma).float(), clean)
        step = loop.update(loss)
        if acc.is_main_process and step % cfg.eval_every == 0:
            quick = eval_denoise(acc.unwrap_model(model).eval(), data, sigmas=(25,), baseline_names=(), max_images=8)
            log(step=step, images_seen=step * cfg.batch_size * acc.num_processes,
                cbsd68_8_sigma25_psnr=quick["sigma25"]["psnr"])
            model.train()
    loop.close(cfg.batch_size)
    acc.wait_for_everyone()

    if not acc.is_main_process:
        common.leave(acc)  # waits for rank 0's evaluation and saving below, then ends this process
        return
    net = acc.unwrap_model(model, keep_fp32_wrapper=False).eval().cpu()
    results = eval_denoise(net, data, baseline_names=("bm3d", "nlm") if cfg.eval_bm3d else ("nlm",),
                           max_images=cfg.eval_max_images or None)
    evals = []
    for name, r in results.items():
        log(eval=name, **{k: round(v, 4) for k, v in r.items()})
        for metric in ("psnr", "ssim"):
            evals.append({"dataset_name": "CBSD68", "metric_type": metric, "metric_value": round(r[metric], 4),
                          "metric_name": f"{metric.upper()} ({name.replace('sigma', 'sigma ')})"})
    lineage = common.run_lineage(lineage, run_dir, cfg, acc.num_processes, loop.steps, "cbsd68_8_sigma25_psnr",
                                 cbsd68_sigma25_psnr=round(results["sigma25"]["psnr"], 4))
    common.finish(net, Path(cfg.out), run_dir, cfg, eval_results=evals, datasets=cfg.train_sets, lineage=lineage,
                  metrics={"params": n_params, "CBSD68": results}, push_to_hub=cfg.push_to_hub)
    common.leave(acc)


if __name__ == "__main__":
    main(common.parse_config(Config))
