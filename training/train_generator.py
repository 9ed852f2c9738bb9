"""Train a class-conditional generator on Fashion-MNIST: a DCGAN-style GAN (conditional DCGAN discriminator, BCE
loss) or a convolutional CVAE. Evaluate with a held-out classifier (the shipped Fashion-MNIST classifier, trained
separately): class agreement over 10,000 samples and FID in its feature space against the test set; for the VAE
also the test-set reconstruction MSE. Writes a Hub-ready folder.

    python training/train_generator.py --kind gan --out weights/generate-fashion-mnist-gan
    python training/train_generator.py --kind vae --out weights/generate-fashion-mnist-vae
    accelerate launch training/train_generator.py ...

Papers: Radford et al. (DCGAN, 2016) and Mirza & Osindero (conditional GANs, 2014) for the discriminator and
losses (non-saturating BCE, one-sided label smoothing, Salimans et al. 2016); the generator and VAE are in
cnnimg_hub/models/generator.py. (A projection discriminator with spectral norm and hinge loss collapsed here.)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import common
from cnnimg_hub import create_model, load_model
from cnnimg_hub.evaluate import eval_generator


@dataclasses.dataclass
class Config:
    """Class-conditional generation training."""
    kind: str = "gan"  # gan or vae
    data: str = str(common.FASHION_MNIST)  # folder of the Fashion-MNIST idx .gz files
    judge: str = "weights/classify-fashion-mnist"  # held-out classifier for the evaluation ('' to skip)
    # model
    latent_dim: int = 0  # 0 = the model's default (GAN 64, VAE 16)
    base_channels: int = 32
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-4  # GAN: Adam(0.5, 0.999) for both nets; VAE: Adam with 5x this
    beta_kl: float = 1.0  # VAE: weight of the KL term
    seed: int = 0
    threads: int = 0
    mixed_precision: str = "no"  # GAN training is touchy in half precision; bf16 is fine for the VAE
    # bookkeeping
    out: str = "weights/generate-fashion-mnist-gan"
    run_dir: str = ""
    resume: bool = False
    limit: int = 0  # train on only this many images (smoke tests)
    eval_samples: int = 10000
    push_to_hub: str = ""


class Discriminator(nn.Module):
    """Conditional DCGAN discriminator: the image and a one-hot class map go in together (Mirza & Osindero),
    strided conv + BN + LeakyReLU, one logit out (trained with the non-saturating BCE loss)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, base_channels: int = 32, image_size: int = 28):
        super().__init__()
        c, self.num_classes = base_channels, num_classes
        self.net = nn.Sequential(
            nn.Conv2d(in_channels + num_classes, c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, True),
            nn.Flatten(), nn.Linear(2 * c * (image_size // 4) ** 2, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return self.net(torch.cat([x, onehot], dim=1)).squeeze(1)


def main(cfg: Config) -> None:
    if cfg.kind not in ("gan", "vae"):
        raise SystemExit("--kind must be gan or vae")
    # load the judge (a folder or Hub repo id) up front: a missing one should fail now, not after training
    judge = load_model(cfg.judge, task="image-classification") if cfg.judge else None
    acc, run_dir, log = common.setup(cfg)
    (xtr, ytr), (xte, yte) = common.fashion_mnist("train", Path(cfg.data)), common.fashion_mnist("test", Path(cfg.data))
    if cfg.limit:
        xtr, ytr = xtr[:cfg.limit], ytr[:cfg.limit]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=cfg.batch_size,
                                         shuffle=True, drop_last=True)
    kw = {"base_channels": cfg.base_channels, **({"latent_dim": cfg.latent_dim} if cfg.latent_dim else {})}
    if cfg.kind == "gan":
        model, disc = create_model("generator-dcgan", **kw), Discriminator(base_channels=cfg.base_channels)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        objects = {"model": model, "disc": disc, "opt": opt, "opt_d": opt_d}
    else:
        model, disc, opt_d = create_model("generator-vae", **kw), None, None
        opt = torch.optim.Adam(model.parameters(), lr=5 * cfg.lr)
        objects = {"model": model, "opt": opt}
    ckpt = run_dir / "checkpoint.pt"
    step = common.resume(ckpt, log, cfg.seed, **objects) if cfg.resume else 0
    if cfg.kind == "gan":
        model, disc, opt, opt_d, loader = acc.prepare(model, disc, opt, opt_d, loader)
    else:
        model, opt, loader = acc.prepare(model, opt, loader)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="start", kind=cfg.kind, params=n_params, train=len(xtr), device=str(acc.device))

    steps = cfg.epochs * len(loader)
    bar = tqdm(total=steps, initial=step, desc=cfg.kind, disable=not acc.is_main_process)
    for epoch in range(step // len(loader), cfg.epochs):
        model.train()
        sums: dict[str, float] = {}
        for x, y in loader:
            x = x.float() / 255.0
            if cfg.kind == "gan":
                real = x * 2 - 1
                z = torch.randn(len(y), acc.unwrap_model(model).latent_dim, device=x.device)
                fake = model(z, y)
                d_real, d_fake = disc(real, y), disc(fake.detach(), y)
                loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 0.9))  # smoothed
                          + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
                acc.backward(loss_d)
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
                d_gen = disc(fake, y)
                loss = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))  # non-saturating
                acc.backward(loss)
                opt.step()
                opt.zero_grad(set_to_none=True)
                parts = {"loss_d": loss_d.item(), "loss_g": loss.item()}
            else:
                with acc.autocast():
                    logits, mu, logvar = model(x, y)
                    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
                    kl = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp()) / len(x)
                    loss = rec + cfg.beta_kl * kl
                acc.backward(loss)
                opt.step()
                opt.zero_grad(set_to_none=True)
                parts = {"rec": rec.item(), "kl": kl.item()}
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
        if acc.is_main_process:
            common.save_checkpoint(ckpt, step=step, **{k: (acc.unwrap_model(o) if k in ("model", "disc") else o)
                                                      .state_dict() for k, o in objects.items()})
            log(epoch=epoch + 1, step=step, **{k: v / len(loader) for k, v in sums.items()})
    bar.close()

    if not acc.is_main_process:
        return
    net = acc.unwrap_model(model).eval().cpu()
    metrics: dict = {"params": n_params}
    evals = []
    if cfg.kind == "vae":
        with torch.inference_mode():
            xt = xte.float() / 255.0
            mse = float(torch.cat([(torch.sigmoid(net(xt[i:i + 1000], yte[i:i + 1000])[0]) - xt[i:i + 1000])
                                   .pow(2).mean((1, 2, 3)) for i in range(0, len(xt), 1000)]).mean())
        metrics["test_reconstruction_mse"] = mse
        evals.append({"dataset_name": "fashion_mnist", "dataset_split": "test", "metric_type": "mse",
                      "metric_value": round(mse, 5), "metric_name": "test reconstruction MSE (pixels in [0, 1])"})
    if judge is not None:
        r = eval_generator(net, judge, xte, n=cfg.eval_samples, seed=cfg.seed)
        metrics.update(r)
        evals += [{"dataset_name": "fashion_mnist", "dataset_split": "test", "metric_type": "accuracy",
                   "metric_value": round(r["class_agreement"], 4),
                   "metric_name": f"class agreement of a held-out classifier ({r['samples']} samples)"},
                  {"dataset_name": "fashion_mnist", "dataset_split": "test", "metric_type": "fid",
                   "metric_value": round(r["fid_judge"], 3), "metric_name": "FID in the classifier's feature space"}]
    else:
        print("--judge '' given: class agreement and FID skipped")
    log(eval="test", **metrics)
    common.finish(net, Path(cfg.out), run_dir, cfg, eval_results=evals, datasets=["fashion_mnist"], metrics=metrics,
                  push_to_hub=cfg.push_to_hub)


if __name__ == "__main__":
    main(common.parse_config(Config))
