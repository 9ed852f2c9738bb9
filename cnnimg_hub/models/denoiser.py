"""Color image denoising: a DRUNet-style residual U-Net (the shipped model) and an FFDNet-class plain stack, both
taking the noise level as input.

UNetDenoiser paper: Zhang et al., "Plug-and-Play Image Restoration with Deep Denoiser Prior" (DRUNet, TPAMI 2021):
a four-level U-Net of bias-free residual blocks, strided-conv down, transposed-conv up, additive skips, with a
noise-level map as an extra input channel. Ours is narrower (default 32-64-128-256 channels) and predicts a residual.
FFDNet
paper: Zhang, Zuo & Zhang, "FFDNet: Toward a Fast and Flexible Solution for CNN-Based Image Denoising" (2018),
with the residual learning of DnCNN (Zhang et al., 2017). The image is pixel-unshuffled to half resolution
(4x cheaper), a noise-level map is concatenated, plain conv-ReLU layers predict the noise, and pixel shuffle
brings it back. Blind use: estimate sigma first (the pipeline does, see `estimate_sigma`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import register_model
from ..spec import InferenceSpec
from ._base import HubModel
from ._blocks import ResUNet


class FFDNet(HubModel, tags=["denoising", "ffdnet"]):
    """Non-blind residual denoiser for additive white Gaussian noise.

    Args:
        in_channels: image channels, 3 for color. Default 3.
        n_feats: feature channels. Default 64.
        n_layers: conv layers in total (first and last included). Default 10.
        max_sigma: the largest noise level (on the 0-255 scale) it was trained for. Default 75.
    """

    task = "denoising"

    def __init__(self, in_channels: int = 3, n_feats: int = 64, n_layers: int = 10, max_sigma: float = 75.0):
        super().__init__()
        self.in_channels, self.max_sigma = in_channels, max_sigma
        layers: list[nn.Module] = [nn.Conv2d(4 * in_channels + 1, n_feats, 3, padding=1), nn.ReLU(True)]
        for _ in range(n_layers - 2):
            layers += [nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(True)]
        layers += [nn.Conv2d(n_feats, 4 * in_channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        # He init keeps the signal alive through the plain conv-ReLU stack (PyTorch's default shrinks it layer by
        # layer and the net then learns little more than a bias).
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.body[-1].weight)  # start as the identity (no noise removed), not as random noise
        nn.init.zeros_(self.body[-1].bias)

    def inference_spec(self) -> InferenceSpec:
        return InferenceSpec(self.task, input_range=[0, 1], color_mode="RGB" if self.in_channels == 3 else "L",
                             noise="additive white Gaussian", sigma_scale=255, max_sigma=self.max_sigma,
                             min_size=2, multiple_of=2, tile_size=512, tile_overlap=32)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """x (N, C, H, W) noisy in [0, 1], H and W even; sigma: noise std on the 0-255 scale, scalar or (N,)."""
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError("height and width must be even; pad the input first")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1) / 255.0
        h = F.pixel_unshuffle(x, 2)
        noise_map = sigma.expand(len(x), 1, *h.shape[-2:])
        return x - F.pixel_shuffle(self.body(torch.cat([h, noise_map], dim=1)), 2)


class UNetDenoiser(HubModel, tags=["denoising", "unet", "drunet"]):
    """Residual U-Net denoiser for additive white Gaussian noise, given (or estimated) noise level.

    Args:
        in_channels: image channels, 3 for color. Default 3.
        channels: feature channels per level, full resolution first; len(channels) - 1 stride-2 levels.
            Default [32, 64, 128, 256].
        n_blocks: residual blocks per level (on the way down, at the bottom and on the way up). Default 2.
        max_sigma: the largest noise level (0-255 scale) it was trained for. Default 50.
    """

    task = "denoising"

    def __init__(self, in_channels: int = 3, channels: list[int] = (32, 64, 128, 256), n_blocks: int = 2,
                 max_sigma: float = 50.0):
        super().__init__()
        self.in_channels, self.max_sigma, self.levels = in_channels, max_sigma, len(channels) - 1
        self.head = nn.Conv2d(in_channels + 1, channels[0], 3, padding=1, bias=False)
        self.unet = ResUNet(channels, n_blocks)
        self.tail = nn.Conv2d(channels[0], in_channels, 3, padding=1, bias=False)
        nn.init.zeros_(self.tail.weight)  # start as the identity

    def inference_spec(self) -> InferenceSpec:
        m = 2 ** self.levels
        return InferenceSpec(self.task, input_range=[0, 1], color_mode="RGB" if self.in_channels == 3 else "L",
                             noise="additive white Gaussian", sigma_scale=255, max_sigma=self.max_sigma,
                             min_size=m, multiple_of=m, tile_size=512, tile_overlap=32)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """x (N, C, H, W) noisy in [0, 1], H and W multiples of 2**levels; sigma: 0-255 scale, scalar or (N,)."""
        m = 2 ** self.levels
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"height and width must be multiples of {m}; pad the input first")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1) / 255.0
        h = self.head(torch.cat([x, sigma.expand(len(x), 1, *x.shape[-2:])], dim=1))
        return x + self.tail(self.unet(h))


register_model("denoise-unet", UNetDenoiser)
register_model("denoise-ffdnet", FFDNet)
register_model("denoise-ffdnet-small", FFDNet, n_feats=48, n_layers=8)
