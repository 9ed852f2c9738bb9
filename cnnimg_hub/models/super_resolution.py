"""Single-image super-resolution: a light ESPCN-class model and an EDSR-baseline-class residual model.

Papers: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel CNN"
(ESPCN, 2016); Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution" (EDSR, 2017).
Both work on RGB in [0, 1] at low resolution and upsample at the end with pixel shuffle. The light model adds
its output to a bicubic upsampling of the input (global residual, as in VDSR), which makes it train in minutes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import register_model
from ..spec import InferenceSpec
from ._base import HubModel

SCALES = (2, 3, 4)


def _check_scale(scale: int) -> int:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale}")
    return scale


def _cubic(t: float, a: float = -0.75) -> float:
    """Keys' cubic convolution kernel with PyTorch's a = -0.75."""
    t = abs(t)
    if t <= 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a if t < 2 else 0.0


def bicubic_kernel(scale: int, channels: int) -> torch.Tensor:
    """F.interpolate(x, scale_factor=scale, mode="bicubic") as a grouped 5x5 conv at low resolution followed by
    pixel shuffle: (channels * scale**2, 1, 5, 5) weights, one filter per output phase, for a replicate-padded input.

    Output pixel scale * i + p samples the input at i + (p + 0.5) / scale - 0.5 (align_corners=False); its four
    cubic taps fall within i - 2 .. i + 2, and PyTorch's index clamping at the border is the replicate padding."""
    w = torch.zeros(scale, 5, dtype=torch.float64)
    for p in range(scale):
        src = (p + 0.5) / scale - 0.5
        first = math.floor(src) - 1
        for k in range(first, first + 4):
            w[p, k + 2] += _cubic(src - k)
    return torch.einsum("ay,bx->abyx", w, w).reshape(scale * scale, 1, 5, 5).repeat(channels, 1, 1, 1).float()


class _SRBase(HubModel):
    task = "super-resolution"
    scale: int
    tile_size = 192

    def inference_spec(self) -> InferenceSpec:
        return InferenceSpec(self.task, input_range=[0, 1], color_mode="RGB" if self.in_channels == 3 else "L",
                             min_size=1, multiple_of=1, tile_size=self.tile_size, tile_overlap=12)


class SpatialMean(nn.Module):
    """(N, C, H, W) -> (N, C, 1, 1), the mean of each channel: `nn.AdaptiveAvgPool2d(1)` as a product with a vector of
    ones, summed with float32 accumulation by the matrix kernel. Same values (to the output's rounding); on CPU
    channels_last bf16 features it is 20x faster than the pooling kernel (64 x 512 x 512: 1.7 ms instead of 40 ms
    on 2 Zen 5 cores), which had made the gates a quarter of a gated ESPCN's time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if x.is_contiguous(memory_format=torch.channels_last):  # (N, H*W, C) is a view: ones (1 x HW) @ it
            s = torch.matmul(x.new_ones(n, 1, h * w), x.permute(0, 2, 3, 1).reshape(n, h * w, c))
        else:  # (N, C, H*W) @ ones (HW x 1)
            s = torch.matmul(x.reshape(n, c, h * w), x.new_ones(n, h * w, 1))
        return (s.float() / (h * w)).to(s.dtype).view(n, c, 1, 1)


class ChannelGate(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): each channel scaled by a weight computed from the whole input's
    mean features. In a blind SR model it lets the network see the image at once, e.g. tell a sharp, aliased
    low-res image (OpenCV cubic without antialiasing) from a soft one (PIL bicubic) and treat each its own way.
    The gate is 2 * sigmoid(.), and its last conv starts at zero: a new gate passes its input unchanged."""

    def __init__(self, n_feats: int, reduction: int = 4):
        super().__init__()
        self.squeeze = nn.Sequential(SpatialMean(), nn.Conv2d(n_feats, n_feats // reduction, 1),
                                     nn.ReLU(True), nn.Conv2d(n_feats // reduction, n_feats, 1))
        nn.init.zeros_(self.squeeze[-1].weight)
        nn.init.zeros_(self.squeeze[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (2 * torch.sigmoid(self.squeeze(x)))


class ESPCN(_SRBase, tags=["super-resolution", "espcn"]):
    """Light sub-pixel CNN with a bicubic skip (well under 100K parameters at the default width).

    Args:
        scale: upscaling factor, 2, 3 or 4. Default 4.
        in_channels: image channels. Default 3.
        n_feats: feature channels. Default 32.
        n_layers: 3x3 conv layers between the 5x5 head conv and the sub-pixel conv. Default 4.
        channel_gates: a `ChannelGate` after each 3x3 layer (whole-image context for blind SR). Such a model
            advises tiles of 1024 input pixels instead of 256: images up to that size run whole, so the gates see
            the whole image, and the tiles of larger ones are big enough to give nearly the same gates (on 96 px
            tiles of a 192 px image the output moved by up to 18/255 at the seams). Default False.
    """

    def __init__(self, scale: int = 4, in_channels: int = 3, n_feats: int = 32, n_layers: int = 4,
                 channel_gates: bool = False):
        super().__init__()
        self.scale, self.in_channels = _check_scale(scale), in_channels
        self.tile_size = 1024 if channel_gates else 256
        layers = [nn.Conv2d(in_channels, n_feats, 5, padding=2), nn.PReLU(n_feats)]
        for _ in range(n_layers):
            layers += [nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.PReLU(n_feats)]
            layers += [ChannelGate(n_feats)] if channel_gates else []
        layers += [nn.Conv2d(n_feats, in_channels * scale ** 2, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)  # start as plain bicubic
        nn.init.zeros_(self.body[-1].bias)
        # kept 3-D: .to(memory_format=channels_last) would give this (n, 1, 5, 5) buffer strides that DDP's buffer
        # broadcast refuses as overlapping
        self.register_buffer("bicubic", bicubic_kernel(scale, in_channels)[:, 0], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale).

        The bicubic skip is added at low resolution, before the one pixel shuffle: the same sum as bicubic
        upsampling at full resolution (to float rounding) without its full-size pass; it runs in float32 even
        under autocast, so the output keeps float32's precision."""
        with torch.autocast(x.device.type, enabled=False):
            padded = F.pad(x.float(), (2, 2, 2, 2), mode="replicate").contiguous()  # grouped conv: NCHW is faster
            base = F.conv2d(padded, self.bicubic[:, None], groups=self.in_channels)
        return F.pixel_shuffle(self.body(x).float().add_(base), self.scale)


class ResBlock(nn.Module):
    """EDSR residual block: conv-ReLU-conv, no batch norm, output scaled by `res_scale`."""

    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(_SRBase, tags=["super-resolution", "edsr"]):
    """EDSR-baseline-class residual network with pixel-shuffle upsampling.

    Args:
        scale: upscaling factor, 2, 3 or 4. Default 4.
        in_channels: image channels. Default 3.
        n_feats: feature channels. Default 64.
        n_resblocks: residual blocks. Default 16 (EDSR-baseline).
        res_scale: residual scaling. Default 1.0.
        rgb_mean: mean subtracted before and added after the network (DIV2K's). Default [0.4488, 0.4371, 0.4040].
    """

    def __init__(self, scale: int = 4, in_channels: int = 3, n_feats: int = 64, n_resblocks: int = 16,
                 res_scale: float = 1.0, rgb_mean: list[float] | None = None):
        super().__init__()
        self.scale, self.in_channels = _check_scale(scale), in_channels
        mean = rgb_mean or ([0.4488, 0.4371, 0.4040] if in_channels == 3 else [0.5] * in_channels)
        self.register_buffer("rgb_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(n_feats, res_scale) for _ in range(n_resblocks)),
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))
        up: list[nn.Module] = []
        steps = [2] * int(math.log2(scale)) if scale in (2, 4) else [3]
        for s in steps:
            up += [nn.Conv2d(n_feats, n_feats * s * s, 3, padding=1), nn.PixelShuffle(s)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(n_feats, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale)."""
        h = self.head(x - self.rgb_mean)
        h = h + self.body(h)
        return self.tail(self.upsample(h)) + self.rgb_mean


register_model("sr-espcn", ESPCN)
register_model("sr-edsr-baseline", EDSR, n_feats=64, n_resblocks=16)
register_model("sr-edsr-small", EDSR, n_feats=64, n_resblocks=8)
