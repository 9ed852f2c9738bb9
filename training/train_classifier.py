"""Train the residual CNN classifier on CIFAR-10 (JPEG copy) or Fashion-MNIST, evaluate top-1 on the test split
and write a Hub-ready folder.

    python training/train_classifier.py --dataset cifar10 --out weights/classify-cifar10
    python training/train_classifier.py --dataset fashion-mnist --out weights/classify-fashion-mnist
    accelerate launch training/train_classifier.py ...

Recipe after the fast CIFAR-10 trainers (ResNet-9 / airbench): SGD with Nesterov momentum, one-cycle learning
rate, label smoothing, random crop (reflect-padded translate) and flips, test-time flip averaging for CIFAR.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import common
from cnnimg_hub import create_model
from cnnimg_hub.evaluate import eval_classifier


@dataclasses.dataclass
class Config:
    """Image classification training."""
    # data
    dataset: str = "cifar10"  # cifar10 or fashion-mnist
    data: str = ""  # cifar10: the cifar10-jpg.tar.gz path; fashion-mnist: the folder of idx .gz files
    translate: int = 2  # random shift in pixels (reflect padding)
    flip: bool = True  # horizontal flips (also used for test-time averaging)
    # model
    widths: list[int] = dataclasses.field(default_factory=list)  # empty = the registered variant's
    depth: int = 1
    # optimisation
    epochs: int = 12
    batch_size: int = 256
    lr: float = 0.2  # peak of the one-cycle schedule (SGD, batch 256)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    seed: int = 0
    threads: int = 0
    mixed_precision: str = "auto"  # auto (bf16 on GPUs and on CPUs with native bf16, else fp32), no, bf16, fp16
    # bookkeeping
    out: str = "weights/classify-cifar10"
    run_dir: str = ""
    resume: bool = False
    trace_batches: int = 0  # write hashes of each rank's first N batches and final weights to the run folder
    limit: int = 0  # use only this many train/test images (smoke tests)
    push_to_hub: str = ""


def load(cfg: Config):
    if cfg.dataset == "cifar10":
        xtr, ytr, names = common.cifar10("train", Path(cfg.data) if cfg.data else None)
        xte, yte, _ = common.cifar10("test", Path(cfg.data) if cfg.data else None)
        return xtr, ytr, xte, yte, names, "classifier-cifar10", ["cifar10"]
    if cfg.dataset == "fashion-mnist":
        root = Path(cfg.data) if cfg.data else common.FASHION_MNIST
        (xtr, ytr), (xte, yte) = common.fashion_mnist("train", root), common.fashion_mnist("test", root)
        return xtr, ytr, xte, yte, None, "classifier-fashion-mnist", ["fashion_mnist"]
    raise SystemExit(f"--dataset must be cifar10 or fashion-mnist, not {cfg.dataset!r}")


def augment(x: torch.Tensor, translate: int, flip: bool) -> torch.Tensor:
    """Random translate (reflect-padded crop) and horizontal flip of a uint8 batch, on the fly."""
    n, _, h, w = x.shape
    if translate:
        x = F.pad(x.float(), (translate,) * 4, mode="reflect")
        dx, dy = torch.randint(0, 2 * translate + 1, (2,))
        x = x[:, :, dy:dy + h, dx:dx + w]
    if flip:
        m = torch.rand(n, device=x.device) < 0.5
        x = torch.where(m[:, None, None, None], x.flip(-1), x)
    return x.float() / 255.0


def main(cfg: Config) -> None:
    acc, run_dir, log = common.setup(cfg)
    xtr, ytr, xte, yte, names, variant, datasets = load(cfg)
    if cfg.limit:
        xtr, ytr, xte, yte = xtr[:cfg.limit], ytr[:cfg.limit], xte[:cfg.limit], yte[:cfg.limit]
    overrides = {"widths": cfg.widths} if cfg.widths else {}
    model = create_model(variant, depth=cfg.depth, **overrides, **({"label_names": names} if names else {}))
    common.rank_seed(acc, cfg.seed)  # each rank its own augmentation stream
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=cfg.batch_size,
                                         shuffle=True, drop_last=True)
    loader = acc.prepare(loader)  # sharded first: an epoch is len(loader) steps on each of the processes
    steps = cfg.epochs * len(loader)
    trace = common.BatchTrace(acc, run_dir, cfg.trace_batches)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    ckpt = run_dir / "checkpoint.pt"
    step = common.resume(ckpt, log, cfg.seed, model=model, opt=opt) if cfg.resume else 0
    # The one-cycle schedule is a function of (step, total steps), so it is rebuilt rather than restored: a run
    # resumed with a different --epochs follows the new schedule from where it stopped.
    for group in opt.param_groups:  # what OneCycleLR itself sets on a fresh start (div factors 25 and 1e4)
        group.update(initial_lr=cfg.lr / 25, max_lr=cfg.lr, min_lr=cfg.lr / 25 / 1e4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.25,
                                                anneal_strategy="linear", last_epoch=step - 1)
    model, opt = acc.prepare(model, opt)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="start", model=variant, params=n_params, train=len(xtr), test=len(xte), device=str(acc.device))

    bar = tqdm(total=steps, initial=step, desc=variant, disable=not acc.is_main_process)
    for epoch in range(step // len(loader), cfg.epochs):
        model.train()
        total = correct = 0
        for x, y in loader:
            trace.batch(step, x, y)
            x = augment(x, cfg.translate, cfg.flip)
            with acc.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            acc.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            total += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / total:.3f}")
        net = acc.unwrap_model(model).eval()
        test = eval_classifier(net, xte, yte)
        if acc.is_main_process:
            common.save_checkpoint(ckpt, model=net.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(),
                                   step=step)  # before the log line, as in common.StepLoop
            log(epoch=epoch + 1, step=step, train_acc=correct / max(1, total), test_top1=test["top1"])
    bar.close()
    common.sync_buffers(acc, model)
    trace.weights(acc.unwrap_model(model))

    if not acc.is_main_process:
        acc.end_training()  # leave the process group cleanly (gloo aborts a process that exits inside it)
        return
    net = acc.unwrap_model(model).eval().cpu()
    r = eval_classifier(net, xte, yte, flip_tta=cfg.flip and cfg.dataset == "cifar10")
    log(eval="test", **r)
    split = f"test ({len(xte):,} images" + (", flip TTA)" if cfg.flip and cfg.dataset == "cifar10" else ")")
    evals = [{"dataset_name": datasets[0], "dataset_split": "test", "metric_type": "accuracy",
              "metric_value": round(r["top1"], 4), "metric_name": f"top-1 accuracy, {split}"},
             {"dataset_name": datasets[0], "dataset_split": "test", "metric_type": "accuracy",
              "metric_value": round(r["top5"], 4), "metric_name": "top-5 accuracy"}]
    common.finish(net, Path(cfg.out), run_dir, cfg, eval_results=evals, datasets=datasets,
                  metrics={"params": n_params, **r}, push_to_hub=cfg.push_to_hub)
    acc.end_training()


if __name__ == "__main__":
    main(common.parse_config(Config))
