"""Train the airbench-style CNN classifier on CIFAR-10 (JPEG copy) or Fashion-MNIST, evaluate top-1 on the test
split and write a Hub-ready folder.

    python training/train_classifier.py --dataset cifar10 --out weights/classify-cifar10
    python training/train_classifier.py --dataset fashion-mnist --out weights/classify-fashion-mnist
    accelerate launch training/train_classifier.py ...

Recipe after Keller Jordan's airbench94 (2024): the first conv is a frozen whitening filter bank computed from the
training images' 2x2 patches (its bias trains for the first epochs only); SGD with Nesterov momentum on the summed
label-smoothed loss, BN shifts at a 64x larger learning rate, a triangular schedule; Lookahead (the weights are
pulled to their running average every 5 steps, more strongly as training ends); per-image random translate
(reflect padding) and flips that alternate from epoch to epoch; test-time averaging over flips and 1-px shifts.
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
    flip: bool = True  # horizontal flips (alternating between epochs; also used for test-time averaging)
    # model
    widths: list[int] = dataclasses.field(default_factory=list)  # empty = the registered variant's (64, 256, 256)
    init_from: str = ""  # start from this saved model (same architecture) instead of a fresh whitening init
    # optimisation (airbench94's values; lr and weight decay are per summed example loss)
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 11.5  # in units of 1 / (1024 * (1 + 1 / (1 - momentum)))
    bias_lr_scale: float = 64.0  # BN shifts learn this much faster
    momentum: float = 0.85
    weight_decay: float = 0.0153
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3  # the whitening conv's bias trains for this many epochs, then is frozen
    lookahead_every: int = 5
    tta: int = 2  # final test: 0 none, 1 flips, 2 flips and 1-px shifts
    seed: int = 0
    threads: int = 0
    mixed_precision: str = "auto"  # auto (bf16 on GPUs and on CPUs with native bf16, else fp32), no, bf16, fp16
    # bookkeeping
    out: str = "weights/classify-cifar10"
    run_dir: str = ""
    resume: bool = False
    trace_batches: int = 0  # write hashes of each rank's first N batches and final weights to the run folder
    limit: int = 0  # use only this many train/test images, drawn at random (smoke tests)
    push_to_hub: str = ""


def load(cfg: Config):
    if cfg.dataset == "cifar10":
        xtr, ytr, names = common.cifar10("train", Path(cfg.data) if cfg.data else None)
        xte, yte, _ = common.cifar10("test", Path(cfg.data) if cfg.data else None)
        return xtr, ytr, xte, yte, names, "classifier-airbench-cifar10", ["cifar10"]
    if cfg.dataset == "fashion-mnist":
        root = Path(cfg.data) if cfg.data else common.FASHION_MNIST
        (xtr, ytr), (xte, yte) = common.fashion_mnist("train", root), common.fashion_mnist("test", root)
        return xtr, ytr, xte, yte, None, "classifier-airbench-fashion-mnist", ["fashion_mnist"]
    raise SystemExit(f"--dataset must be cifar10 or fashion-mnist, not {cfg.dataset!r}")


def augment(x: torch.Tensor, flip: torch.Tensor, translate: int) -> torch.Tensor:
    """uint8 batch -> float in [0, 1], each image shifted by its own random offset (reflect-padded) and mirrored
    where `flip` is set."""
    n, c, h, w = x.shape
    x = x.float() / 255.0
    if translate:
        x = F.pad(x, (translate,) * 4, mode="reflect")
        dy, dx = torch.randint(0, 2 * translate + 1, (2, n, 1))
        rows = (dy + torch.arange(h))[:, None, :, None]
        cols = (dx + torch.arange(w))[:, None, None, :]
        x = x[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@torch.no_grad()
def init_whitening(model, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set the whitening conv to the eigenvectors of the k x k patch covariance of `images` (uint8), scaled by
    1/sqrt(eigenvalue), plus their negatives (airbench)."""
    conv = model.whiten
    k = conv.kernel_size[0]
    x = (images.float() / 255.0 - model.mean) / model.std
    c = x.shape[1]
    patches = x.unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c * k * k)
    cov = patches.T @ patches / len(patches)
    eigval, eigvec = torch.linalg.eigh(cov)
    eigval, eigvec = eigval.flip(0), eigvec.T.flip(0)  # largest first
    filters = (eigvec / torch.sqrt(eigval + eps)[:, None]).reshape(-1, c, k, k)
    conv.weight.copy_(torch.cat([filters, -filters]))
    conv.bias.zero_()
    conv.weight.requires_grad_(False)


class Lookahead:
    """Every few steps the weights move to a running average of themselves (airbench's Lookahead state)."""

    def __init__(self, model: torch.nn.Module):
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, decay: float) -> None:
        for k, v in model.state_dict().items():
            if k in self.ema:
                self.ema[k].lerp_(v, 1 - decay)
                v.copy_(self.ema[k])


def main(cfg: Config) -> None:
    acc, run_dir, log = common.setup(cfg)
    xtr, ytr, xte, yte, names, variant, datasets = load(cfg)
    if cfg.limit:  # a random subset (the archives are sorted by class)
        g = torch.Generator().manual_seed(cfg.seed)
        tr, te = torch.randperm(len(xtr), generator=g)[:cfg.limit], torch.randperm(len(xte), generator=g)[:cfg.limit]
        xtr, ytr, xte, yte = xtr[tr], ytr[tr], xte[te], yte[te]
    overrides = {"widths": cfg.widths} if cfg.widths else {}
    model = create_model(variant, **overrides, **({"label_names": names} if names else {}))
    lineage = common.init_from(model, cfg.init_from, log) if cfg.init_from else []
    if not cfg.init_from:
        init_whitening(model, xtr[torch.randperm(len(xtr), generator=torch.Generator().manual_seed(cfg.seed))[:5000]])
    model.whiten.weight.requires_grad_(False)
    common.rank_seed(acc, cfg.seed)  # each rank its own augmentation stream
    # the index rides along so each image's flip can alternate from one epoch to the next
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr, torch.arange(len(xtr))),
                                         batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    loader = acc.prepare(loader)  # sharded first: an epoch is len(loader) steps on each of the processes
    steps = cfg.epochs * len(loader)
    first_flip = torch.rand(len(xtr), generator=torch.Generator().manual_seed(cfg.seed)) < 0.5
    trace = common.BatchTrace(acc, run_dir, cfg.trace_batches)

    kilo = 1024 * (1 + 1 / (1 - cfg.momentum))  # airbench's units: lr per summed loss, decoupled weight decay
    lr, wd = cfg.lr / kilo, cfg.weight_decay * cfg.batch_size / kilo
    biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    others = [p for n, p in model.named_parameters() if "norm" not in n and p.requires_grad]
    opt = torch.optim.SGD([{"params": biases, "lr": lr * cfg.bias_lr_scale, "weight_decay": wd / (lr * cfg.bias_lr_scale)},
                           {"params": others, "lr": lr, "weight_decay": wd / lr}], momentum=cfg.momentum, nesterov=True)
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    warm = int(0.23 * steps)

    def schedule(s: int) -> float:  # triangular: 0.2 -> 1 over the first 23% of steps, then down to 0.07
        if s < warm:
            return 0.2 + 0.8 * s / max(1, warm)
        return 1.0 + (0.07 - 1.0) * (s - warm) / max(1, steps - warm)

    ckpt = run_dir / "checkpoint.pt"
    step = common.resume(ckpt, log, cfg.seed, model=model, opt=opt) if cfg.resume else 0
    model, opt = acc.prepare(model, opt)
    net = acc.unwrap_model(model)
    lookahead = Lookahead(net)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="start", model=variant, params=n_params, train=len(xtr), test=len(xte), device=str(acc.device))

    bar = tqdm(total=steps, initial=step, desc=variant, disable=not acc.is_main_process)
    for epoch in range(step // len(loader), cfg.epochs):
        model.train()
        total = correct = 0
        for x, y, idx in loader:
            trace.batch(step, x, y)
            flip = (first_flip[idx.cpu()] ^ bool(epoch % 2)).to(x.device) if cfg.flip else torch.zeros(len(x), dtype=torch.bool, device=x.device)
            x = augment(x, flip, cfg.translate)
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * schedule(step)
            with acc.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing, reduction="sum")
            acc.backward(loss * acc.num_processes)  # DDP averages over processes; airbench's loss is a sum
            if epoch >= cfg.whiten_bias_epochs:
                net.whiten.bias.grad = None  # frozen from here on (SGD skips a parameter without a gradient)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % cfg.lookahead_every == 0:
                lookahead.update(net, decay=0.95 ** cfg.lookahead_every * (step / steps) ** 3)
            total += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item() / len(y):.3f}", acc=f"{correct / total:.3f}")
        if step >= steps:
            lookahead.update(net, decay=1.0)  # end on the averaged weights
        net.eval()
        test = eval_classifier(net, xte, yte)
        if acc.is_main_process:
            common.save_checkpoint(ckpt, model=net.state_dict(), opt=opt.state_dict(), step=step)
            log(epoch=epoch + 1, step=step, images_seen=step * cfg.batch_size * acc.num_processes,
                train_acc=correct / max(1, total), test_top1=test["top1"])
    bar.close()
    common.sync_buffers(acc, model)
    trace.weights(net)

    if acc.is_main_process:
        evaluate_and_save(cfg, acc, net, xte, yte, datasets, lineage, n_params, run_dir, log, step)
    common.leave(acc)


def evaluate_and_save(cfg, acc, net, xte, yte, datasets, lineage, n_params, run_dir, log, step) -> None:
    """The final test (with TTA) and the Hub-ready folder; rank 0 only."""
    net = net.eval().cpu()
    r = eval_classifier(net, xte, yte)
    r_tta = eval_classifier(net, xte, yte, tta=cfg.tta) if cfg.tta else r
    r["top1_tta"], r["tta"] = r_tta["top1"], cfg.tta
    log(eval="test", **r)
    views = {0: "", 1: ", flip TTA", 2: ", flip and 1-px shift TTA"}[cfg.tta]
    evals = [{"dataset_name": datasets[0], "dataset_split": "test", "metric_type": "accuracy",
              "metric_value": round(r["top1"], 4), "metric_name": f"top-1 accuracy, test ({len(xte):,} images)"},
             {"dataset_name": datasets[0], "dataset_split": "test", "metric_type": "accuracy",
              "metric_value": round(r["top5"], 4), "metric_name": "top-5 accuracy"}]
    if cfg.tta:
        evals.insert(1, {"dataset_name": datasets[0], "dataset_split": "test", "metric_type": "accuracy",
                         "metric_value": round(r["top1_tta"], 4),
                         "metric_name": f"top-1 accuracy, test ({len(xte):,} images{views})"})
    lineage = common.run_lineage(lineage, run_dir, cfg, acc.num_processes, step, "test_top1",
                                 test_top1=round(r["top1"], 4))
    common.finish(net, Path(cfg.out), run_dir, cfg, eval_results=evals, datasets=datasets, lineage=lineage,
                  metrics={"params": n_params, **r}, push_to_hub=cfg.push_to_hub)


if __name__ == "__main__":
    main(common.parse_config(Config))
