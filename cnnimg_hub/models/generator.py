"""Class-conditional image generators: a DCGAN-style generator and a convolutional VAE.

Papers: Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs" (DCGAN, 2016) with
class conditioning as in Mirza & Osindero, "Conditional GANs" (2014); Kingma & Welling, "Auto-Encoding
Variational Bayes" (2014) and Sohn et al., "Learning Structured Output Representation using Deep Conditional
Generative Models" (CVAE, 2015). The GAN's discriminator is a training-only part and lives in training/.

Both expose the same sampling interface, so the pipelines treat them alike:
``generate(labels, generator=None) -> (N, C, H, W) images in [0, 1]`` and ``decode_latent(z, labels)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import register_model
from ..spec import InferenceSpec
from ._base import HubModel
from .classifier import FASHION_MNIST_LABELS


def _check_size(image_size: int) -> int:
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 (28 and 32 work), got {image_size}")
    return image_size // 4


class _Sampler:
    """Shared sampling code: latent draws and label checks for both generators."""

    latent_dim: int
    num_classes: int

    def _labels(self, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long, device=self._device())
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"class labels must be in [0, {self.num_classes - 1}]")
        return labels

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    latent_std: float = 1.0

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n normal latents (standard deviation `latent_std`), drawn on the CPU so a seed gives the same images on
        every device."""
        return (torch.randn(n, self.latent_dim, generator=generator) * self.latent_std).to(self._device())

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        labels = self._labels(labels)
        return self.decode_latent(self.sample_latent(len(labels), generator), labels)


class ConditionalGenerator(_Sampler, HubModel, tags=["image-generation", "gan", "dcgan"]):
    """DCGAN-style class-conditional generator: (z, class) -> image.

    Args:
        latent_dim: size of the noise vector z. Default 64.
        num_classes: number of classes. Default 10.
        embed_dim: size of the learned class embedding concatenated to z. Default 32.
        base_channels: channels of the last upsampling stage (the first has 4x). Default 64.
        out_channels: 1 for gray, 3 for RGB. Default 1.
        image_size: output side, a multiple of 4 (28 for Fashion-MNIST, 32 for CIFAR). Default 28.
        label_names: class names. Default: Fashion-MNIST's.
        upsample: "transposed" (DCGAN's 4x4 stride-2 transposed convs) or "nearest" (nearest-neighbour 2x then a
            3x3 conv, which avoids the transposed convs' checkerboard speckle; Odena et al., Distill 2016).
            Default "transposed" (the first shipped model's).
        latent_std: standard deviation of the latents drawn for sampling (trained with 1.0); below 1 trades
            variety for typical samples, the "truncation trick" of BigGAN (Brock et al. 2019). Default 1.0.
    """

    task = "image-generation"

    def __init__(self, latent_dim: int = 64, num_classes: int = 10, embed_dim: int = 32, base_channels: int = 64,
                 out_channels: int = 1, image_size: int = 28, label_names: list[str] | None = None,
                 upsample: str = "transposed", latent_std: float = 1.0):
        super().__init__()
        if not 0 < latent_std <= 1:
            raise ValueError(f"latent_std must be in (0, 1], got {latent_std}")
        self.latent_dim, self.num_classes, self.out_channels, self.image_size = (
            latent_dim, num_classes, out_channels, image_size)
        self.latent_std = float(latent_std)
        self.label_names = list(label_names or FASHION_MNIST_LABELS[:num_classes])
        self.start = _check_size(image_size)
        c = base_channels
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.project = nn.Sequential(nn.Linear(latent_dim + embed_dim, 4 * c * self.start ** 2, bias=False),
                                     nn.BatchNorm1d(4 * c * self.start ** 2), nn.ReLU(True))
        if upsample not in ("transposed", "nearest"):
            raise ValueError(f"upsample must be 'transposed' or 'nearest', got {upsample!r}")

        def up(cin: int, cout: int) -> list[nn.Module]:
            if upsample == "transposed":
                return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]
            return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1, bias=False)]

        self.net = nn.Sequential(
            *up(4 * c, 2 * c), nn.BatchNorm2d(2 * c), nn.ReLU(True),
            *up(2 * c, c), nn.BatchNorm2d(c), nn.ReLU(True),
            nn.Conv2d(c, out_channels, 3, padding=1), nn.Tanh(),
        )

    def inference_spec(self) -> InferenceSpec:
        return InferenceSpec(self.task, output_size=[self.out_channels, self.image_size, self.image_size],
                             output_range=[0, 1], latent_dim=self.latent_dim, kind="gan")

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, latent_dim), (N,) -> images in [-1, 1] (the range the discriminator trains on)."""
        h = self.project(torch.cat([z, self.embed(labels)], dim=1))
        return self.net(h.view(len(z), -1, self.start, self.start))

    def decode_latent(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self(z, self._labels(labels)) + 1) / 2


class ConditionalVAE(_Sampler, HubModel, tags=["image-generation", "vae"]):
    """Convolutional class-conditional VAE: the encoder sees the image and a class map, the decoder (z, class).

    Args:
        latent_dim: size of the latent z. Default 16.
        num_classes: number of classes. Default 10.
        base_channels: channels of the first encoder conv (doubled once). Default 32.
        in_channels: 1 for gray, 3 for RGB. Default 1.
        image_size: side, a multiple of 4. Default 28.
        label_names: class names. Default: Fashion-MNIST's.
        decoder_convs: extra 3x3 conv layers after each of the decoder's two upsamplings. Default 0.
        prior: where samples come from. "standard": z ~ N(0, I), the training prior. "fitted": per class, the
            Gaussian that matches the mean and covariance of the training images' posteriors q(z | x, class)
            (ex-post density estimation, Ghosh et al. 2020), set by `fit_prior` after training; a VAE trained
            with a KL weight below 1 leaves N(0, I) and needs it. Either way `decode_latent` takes N(0, I) noise,
            so seeds and interpolation work alike. Default "standard".
    """

    task = "image-generation"

    def __init__(self, latent_dim: int = 16, num_classes: int = 10, base_channels: int = 32, in_channels: int = 1,
                 image_size: int = 28, label_names: list[str] | None = None, decoder_convs: int = 0,
                 prior: str = "standard"):
        super().__init__()
        if prior not in ("standard", "fitted"):
            raise ValueError(f"prior must be 'standard' or 'fitted', got {prior!r}")
        self.prior = prior
        self.latent_dim, self.num_classes, self.in_channels, self.image_size = (
            latent_dim, num_classes, in_channels, image_size)
        self.label_names = list(label_names or FASHION_MNIST_LABELS[:num_classes])
        self.start = s = _check_size(image_size)
        c = base_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels + num_classes, c, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, True), nn.Flatten(),
            nn.Linear(2 * c * s * s, 256), nn.LeakyReLU(0.2, True), nn.Linear(256, 2 * latent_dim),
        )
        self.decoder_in = nn.Sequential(nn.Linear(latent_dim + num_classes, 256), nn.ReLU(True),
                                        nn.Linear(256, 2 * c * s * s), nn.ReLU(True))

        def extra(bn: bool) -> list[nn.Module]:
            return [m for _ in range(decoder_convs) for m in
                    (nn.Conv2d(c, c, 3, padding=1), *([nn.BatchNorm2d(c)] if bn else []), nn.ReLU(True))]

        self.decoder = nn.Sequential(  # decoder_convs=0 is the original layout (the shipped weights' keys)
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.BatchNorm2d(c), nn.ReLU(True), *extra(bn=True),
            nn.ConvTranspose2d(c, c, 4, 2, 1), nn.ReLU(True), *extra(bn=False),
            nn.Conv2d(c, in_channels, 3, padding=1),
        )
        self._c = c
        if prior == "fitted":  # per class: the mean and the Cholesky factor of the covariance, set by fit_prior
            self.register_buffer("prior_loc", torch.zeros(num_classes, latent_dim))
            self.register_buffer("prior_scale_tril", torch.eye(latent_dim).repeat(num_classes, 1, 1))

    def inference_spec(self) -> InferenceSpec:
        return InferenceSpec(self.task, output_size=[self.in_channels, self.image_size, self.image_size],
                             output_range=[0, 1], latent_dim=self.latent_dim, kind="vae")

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x in [0, 1] -> (mu, logvar) of q(z | x, class)."""
        onehot = F.one_hot(labels, self.num_classes).to(x.dtype)[:, :, None, None]
        h = self.encoder(torch.cat([x, onehot.expand(-1, -1, *x.shape[2:])], dim=1))
        return h.chunk(2, dim=1)

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(labels, self.num_classes).to(z.dtype)
        h = self.decoder_in(torch.cat([z, onehot], dim=1)).view(len(z), 2 * self._c, self.start, self.start)
        return self.decoder(h)

    def decode_latent(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """N(0, I) noise (N, latent_dim) and classes -> images in [0, 1], through the fitted prior if there is one."""
        labels = self._labels(labels)
        if self.prior == "fitted":
            with torch.autocast(z.device.type, enabled=False):  # a small affine map; keep it exact
                z = self.prior_loc[labels] + (self.prior_scale_tril[labels] @ z.float()[:, :, None])[:, :, 0]
        return torch.sigmoid(self.decode_logits(z, labels))

    @torch.no_grad()
    def fit_prior(self, mu: torch.Tensor, logvar: torch.Tensor, labels: torch.Tensor) -> None:
        """Set the fitted prior from posteriors (mu, logvar) of training images: for each class, the Gaussian with
        the mean and covariance of the mixture of its images' posteriors (covariance of the means plus the mean
        posterior variance)."""
        if self.prior != "fitted":
            raise ValueError("fit_prior needs a model made with prior='fitted'")
        mu, var, labels = mu.double().cpu(), logvar.double().exp().cpu(), labels.cpu()
        if len(mu) < 2:
            raise ValueError(f"fit_prior needs at least 2 images, got {len(mu)}")
        for c in range(self.num_classes):
            keep = labels == c
            if keep.sum() < 2:  # too few images of this class: the fit over all classes
                keep = torch.ones_like(keep)
            cov = torch.cov(mu[keep].T) + torch.diag(var[keep].mean(0))
            self.prior_loc[c] = mu[keep].mean(0).to(self.prior_loc)
            self.prior_scale_tril[c] = torch.linalg.cholesky(cov).to(self.prior_scale_tril)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: returns (reconstruction logits, mu, logvar)."""
        mu, logvar = self.encode(x, labels)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode_logits(z, labels), mu, logvar


register_model("generator-dcgan", ConditionalGenerator)
register_model("generator-vae", ConditionalVAE)
