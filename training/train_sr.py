"""Train a super-resolution model (ESPCN-class light or EDSR-class large) on T91 + BSD200 + General100-50
(+ BSDS500-test), evaluate on Set5/Set14/BSD100 and write a Hub-ready folder.

The low-resolution inputs are made by a random mix of downsamplers (PIL bicubic with antialiasing; OpenCV cubic,
linear and area without it; Lanczos; Gaussian blur then sampling) and, now and then, a light JPEG round trip, so the
model works on uploads whatever made them, not only on PIL-bicubic ones (`--degradations pil-bicubic` for that).

    python training/train_sr.py --scale 2 --out weights/sr-x2
    python training/train_sr.py --scale 4 --init-from weights/sr-x4 --out weights/sr-x4   # continue the shipped one
    python training/train_sr.py --model sr-edsr-small --scale 4 --out weights/sr-x4-large --steps 3000
    accelerate launch training/train_sr.py ...            # one or many GPUs, bf16
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import common
from cnnimg_hub import create_model, degrade
from cnnimg_hub.evaluate import eval_sr


@dataclasses.dataclass
class Config:
    """Super-resolution training."""
    # model
    model: str = "sr-espcn"  # registered name: sr-espcn, sr-edsr-small, sr-edsr-baseline
    scale: int = 4  # 2, 3 or 4
    n_feats: int = 0  # feature channels (0 = the variant's default)
    n_layers: int = 0  # sr-espcn conv layers (0 = the variant's default)
    channel_gates: bool = False  # sr-espcn: a squeeze-and-excitation gate after each layer (whole-image context)
    init_from: str = ""  # start from this saved model (folder or Hub repo id, same architecture), fresh schedule
    # data
    data: str = str(common.DATA)  # datasets root (train/ is used, val/ only for evaluation)
    train_sets: list = dataclasses.field(default_factory=lambda: ["T91", "BSD200", "General100-50", "BSDS500-test"])
    lr_patch: int = 32  # low-resolution patch side; HR patches are lr_patch * scale
    aug_scales: list = dataclasses.field(default_factory=lambda: [1.0, 0.8, 0.6])  # rescaled copies of each image
    # how LR images are made: one drawn per image from this list (repeat a name to weight it)
    degradations: list = dataclasses.field(default_factory=lambda: [
        "pil-bicubic", "pil-bicubic", "cv2-cubic", "cv2-linear", "cv2-area", "pil-lanczos", "gaussian-decimate"])
    blur: list = dataclasses.field(default_factory=lambda: [0.25, 0.55])  # gaussian-decimate std range, x scale
    jpeg_prob: float = 0.05  # share of LR images sent through a light JPEG round trip
    jpeg_quality: list = dataclasses.field(default_factory=lambda: [75, 95])
    # optimisation
    steps: int = 10000  # optimizer steps, whatever the number of processes
    batch_size: int = 16  # per process: the effective batch is batch_size x processes
    lr: float = 1e-3
    weight_decay: float = 0.0
    minutes: float = 0.0  # wall-clock budget: > 0 ends the run (and its decay) when it is spent
    warmup: int = 200
    seed: int = 0
    threads: int = 0  # torch CPU threads, 0 = torch's default
    mixed_precision: str = "auto"  # auto (bf16 on GPUs and on CPUs with native bf16, else fp32), no, bf16, fp16
    # bookkeeping
    eval_every: int = 1000  # steps between Set5 checks
    ckpt_every: int = 500
    out: str = "weights/sr-x4"  # Hub-ready folder
    run_dir: str = ""  # checkpoints and logs; default runs/<out folder name>
    resume: bool = False
    trace_batches: int = 0  # write hashes of each rank's first N batches and final weights to the run folder
    eval_max_images: int = 0  # 0 = all images of each validation set (smoke tests use fewer)
    push_to_hub: str = ""  # user/name to upload the folder to at the end


def make_lr(hr: torch.Tensor, cfg: Config, rng: random.Random) -> torch.Tensor:
    """(N, C, H, W) HR batch in [0, 1] -> its LR batch, each image by a method drawn from cfg.degradations."""
    out = []
    for t in hr:
        img = (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        method = rng.choice(cfg.degradations)
        lr = degrade.downsample(img, cfg.scale, method, blur=rng.uniform(*cfg.blur) * cfg.scale)
        if rng.random() < cfg.jpeg_prob:
            lr = degrade.jpeg(lr, rng.randint(*cfg.jpeg_quality))
        out.append(torch.from_numpy(np.array(lr)).permute(2, 0, 1))
    return torch.stack(out).float() / 255.0


def main(cfg: Config) -> None:
    acc, run_dir, log = common.setup(cfg)
    data = Path(cfg.data)
    for d in cfg.degradations:
        if d not in degrade.DOWNSAMPLERS:
            raise SystemExit(f"--degradations: unknown {d!r}; choose from {', '.join(degrade.DOWNSAMPLERS)}")

    files = common.list_images([data / "train" / s for s in cfg.train_sets])
    dataset = common.PatchDataset(files, cfg.lr_patch * cfg.scale, cfg.steps * cfg.batch_size * acc.num_processes,
                                  scales=tuple(cfg.aug_scales), seed=cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, drop_last=True)
    width = {"n_feats": cfg.n_feats} if cfg.n_feats else {}
    width.update({"n_layers": cfg.n_layers} if cfg.n_layers else {})
    width.update({"channel_gates": True} if cfg.channel_gates else {})
    model = create_model(cfg.model, scale=cfg.scale, **width)
    lineage = common.init_from(model, cfg.init_from, log) if cfg.init_from else []
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = common.cosine_schedule(opt, cfg.steps, cfg.warmup)
    ckpt = run_dir / "checkpoint.pt"
    step = common.resume(ckpt, log, cfg.seed, model=model, opt=opt, sched=sched) if cfg.resume else 0
    dataset.seed = cfg.seed + step  # fresh crops after a resume
    degrade_rng = random.Random((cfg.seed + 1 + step) * 1000 + acc.process_index)  # own stream per rank
    model, opt, loader = acc.prepare(model, opt, loader)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="start", model=cfg.model, scale=cfg.scale, params=n_params, images=len(files), device=str(acc.device))

    trace = common.BatchTrace(acc, run_dir, cfg.trace_batches)
    model.train()
    loop = common.StepLoop(acc, model, opt, sched, steps=cfg.steps, start=step, log=log, ckpt=ckpt,
                           ckpt_every=cfg.ckpt_every, desc=f"{cfg.model} x{cfg.scale}", minutes=cfg.minutes)
    for hr in loop.batches(loader):
        if loop.done:
            break
        with loop.preparing():
            lr_img = make_lr(hr.cpu(), cfg, degrade_rng).to(hr.device).contiguous(memory_format=torch.channels_last)
        trace.batch(loop.step, hr, lr_img)
        with acc.autocast():
            loss = F.l1_loss(model(lr_img).float(), hr)
        step = loop.update(loss)
        if acc.is_main_process and step % cfg.eval_every == 0:
            net = acc.unwrap_model(model).eval()
            limit = cfg.eval_max_images or None
            set5 = eval_sr(net, data, sets=("Set5",), max_images=limit)["Set5"]
            cv2_cubic = eval_sr(net, data, sets=("Set5",), lr_source="cv2-cubic", max_images=limit)["Set5"]
            log(step=step, images_seen=step * cfg.batch_size * acc.num_processes,
                set5_psnr=set5["psnr"], set5_bicubic_psnr=set5["bicubic_psnr"], set5_cv2cubic_psnr=cv2_cubic["psnr"],
                set5_cv2cubic_bicubic_psnr=cv2_cubic["bicubic_psnr"])
            model.train()
    loop.close(cfg.batch_size)
    acc.wait_for_everyone()
    trace.weights(acc.unwrap_model(model))

    if not acc.is_main_process:
        common.leave(acc)  # waits for rank 0's evaluation and saving below, then ends this process
        return
    net = acc.unwrap_model(model, keep_fp32_wrapper=False).eval().cpu()
    limit = cfg.eval_max_images or None
    results = eval_sr(net, data, max_images=limit)
    results.update({f"{k} (MATLAB LR)": v for k, v in
                    eval_sr(net, data, sets=("Set5", "Set14"), lr_source="matlab", max_images=limit).items()})
    for method in ("cv2-cubic", "cv2-area", "cv2-linear"):
        results.update({f"{k} ({method} LR)": v for k, v in
                        eval_sr(net, data, sets=("Set14", "BSD100"), lr_source=method, max_images=limit).items()})
    for name, r in results.items():
        log(eval=name, psnr=r["psnr"], ssim=r["ssim"], bicubic_psnr=r["bicubic_psnr"])
    evals = []
    for name, r in results.items():
        for metric in ("psnr", "ssim"):
            evals.append({"dataset_name": name, "metric_type": metric, "metric_value": round(r[metric], 4),
                          "metric_name": f"{metric.upper()} (Y, x{cfg.scale})"})
    lineage = common.run_lineage(lineage, run_dir, cfg, acc.num_processes, loop.steps, "set5_psnr",
                                 set5_psnr=round(results["Set5"]["psnr"], 4))
    common.finish(net, Path(cfg.out), run_dir, cfg, eval_results=evals, datasets=cfg.train_sets, lineage=lineage,
                  metrics={"params": n_params, **results}, push_to_hub=cfg.push_to_hub)
    common.leave(acc)


if __name__ == "__main__":
    main(common.parse_config(Config))
