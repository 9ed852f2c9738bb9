"""Image inpainting: a residual U-Net that refines a push-pull fill (the shipped model), and a gated-convolution U-Net.

UNetInpainter: the DRUNet trunk (Zhang et al., TPAMI 2021; see `_blocks.ResUNet`), five levels so the receptive field
spans the largest holes, fed a smooth pyramid fill of the holes and the mask; it predicts a correction of that fill.
GatedUNet paper: Yu et al., "Free-Form Image Inpainting with Gated Convolution" (DeepFill v2, ICCV 2019); U-Net after
Ronneberger et al. (2015). Mask convention: 1 = hole (pixels to fill), 0 = known. The network sees the image with
its holes zeroed and the mask; its output is composited so known pixels pass through unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import register_model
from ..spec import InferenceSpec
from ._base import HubModel
from ._blocks import ResUNet


PYRAMID_LEVELS = 16  # enough for a 65,536-pixel side; the levels past 1 pixel are dropped


def push_pull_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill the holes (mask 1) smoothly from the known pixels: average known pixels and their weights down a
    pyramid (push), then fill each level's holes from the coarser level (pull). A cheap, differentiable
    first guess (about Telea's quality) that the network then refines.

    The pyramid always has PYRAMID_LEVELS levels; the pull starts afresh at the first level whose shorter side is 1
    pixel, so the coarser ones change nothing. The depth is thus no Python loop over the input's size, and an
    exported graph (ONNX) fills exactly like this at every size."""
    x, w = image * (1 - mask), 1 - mask
    pyramid = [(x, w)]
    for _ in range(PYRAMID_LEVELS):
        x, w = F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)
        pyramid.append((x, w))
    fill = None
    for x, w in reversed(pyramid):
        known = x / w.clamp(min=1e-6)
        if fill is None:
            fill = known
            continue
        up = F.interpolate(fill, size=x.shape[-2:], mode="bilinear", align_corners=False)
        # larger than 1 x 1 pixel in both sides, from the tensor itself (a traced graph keeps this dynamic)
        above = (torch.ones_like(x[:1, :1, :, :1]).sum() > 1) & (torch.ones_like(x[:1, :1, :1, :]).sum() > 1)
        fill = torch.where(above, known * w + up * (1 - w), known)  # w = fraction known: keep it, pull the rest
    return fill


class GatedConv(nn.Module):
    """y = ELU(conv_f(x)) * sigmoid(conv_g(x)): the gate learns where features are valid (outside holes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, stride=stride, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.conv(x).chunk(2, dim=1)
        return F.elu(f) * torch.sigmoid(g)


class _InpaintBase(HubModel):
    """What both inpainting U-Nets share: the config a consumer needs and the input-size check. `self.levels` is the
    number of stride-2 levels (inputs are multiples of 2 ** levels)."""

    task = "inpainting"
    in_channels: int
    levels: int
    min_multiples = 1  # min_size = min_multiples * 2 ** levels

    def inference_spec(self) -> InferenceSpec:
        m = 2 ** self.levels
        return InferenceSpec(self.task, input_range=[0, 1], color_mode="RGB" if self.in_channels == 3 else "L",
                             mask_convention="1 = hole (pixels to fill), 0 = known", min_size=self.min_multiples * m,
                             multiple_of=m, tile_size=512, tile_overlap=64)

    def _check_size(self, image: torch.Tensor) -> None:
        m = 2 ** self.levels
        if image.shape[-2] % m or image.shape[-1] % m:
            raise ValueError(f"height and width must be multiples of {m}; pad the input first")


class GatedUNet(_InpaintBase, tags=["inpainting", "gated-convolution", "unet"]):
    """U-Net of gated convolutions with a dilated bottleneck.

    Args:
        in_channels: image channels. Default 3.
        base_channels: channels at full resolution, doubled per level (capped at 4x). Default 24.
        depth: number of stride-2 levels; inputs are padded to a multiple of 2**depth. Default 3.
        dilations: dilation rates of the bottleneck convs (they widen the receptive field). Default [2, 4, 8].
        prefill: "none" (holes zeroed, output through a sigmoid) or "push-pull" (holes pre-filled by
            `push_pull_fill`, the network adds a correction). Default "none".
    """

    min_multiples = 2

    def __init__(self, in_channels: int = 3, base_channels: int = 24, depth: int = 3,
                 dilations: list[int] = (2, 4, 8), prefill: str = "none"):
        super().__init__()
        if prefill not in ("none", "push-pull"):
            raise ValueError(f"prefill must be 'none' or 'push-pull', got {prefill!r}")
        self.in_channels, self.depth, self.levels, self.prefill = in_channels, depth, depth, prefill
        ch = [base_channels * min(2 ** i, 4) for i in range(depth + 1)]
        self.stem = GatedConv(in_channels + 1, ch[0])
        self.down = nn.ModuleList(nn.Sequential(GatedConv(ch[i], ch[i + 1], stride=2), GatedConv(ch[i + 1], ch[i + 1]))
                                  for i in range(depth))
        self.bottleneck = nn.Sequential(*(GatedConv(ch[-1], ch[-1], dilation=d) for d in dilations))
        self.up = nn.ModuleList(nn.Sequential(GatedConv(ch[i + 1] + ch[i], ch[i]), GatedConv(ch[i], ch[i]))
                                for i in reversed(range(depth)))
        self.out = nn.Conv2d(ch[0], in_channels, 3, padding=1)
        if prefill == "push-pull":  # start as the plain push-pull fill
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (N, C, H, W) in [0, 1], mask (N, 1, H, W) with 1 = hole; H, W multiples of 2**depth."""
        self._check_size(image)
        known = image * (1 - mask)
        base = push_pull_fill(image, mask) if self.prefill == "push-pull" else known
        h = self.stem(torch.cat([base, mask], dim=1))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for up, skip in zip(self.up, reversed(skips)):
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = up(torch.cat([h, skip], dim=1))
        pred = (base + self.out(h)).clamp(0, 1) if self.prefill == "push-pull" else torch.sigmoid(self.out(h))
        return known + pred * mask


class UNetInpainter(_InpaintBase, tags=["inpainting", "unet"]):
    """Residual U-Net that corrects a push-pull fill of the holes; known pixels pass through unchanged.

    Args:
        in_channels: image channels. Default 3.
        channels: feature channels per level, full resolution first; len(channels) - 1 stride-2 levels, inputs are
            padded to a multiple of 2 ** that. Default [32, 64, 128, 192, 192].
        n_blocks: residual blocks per level. Default 2.
    """

    def __init__(self, in_channels: int = 3, channels: list[int] = (32, 64, 128, 192, 192), n_blocks: int = 2):
        super().__init__()
        self.in_channels, self.levels = in_channels, len(channels) - 1
        self.head = nn.Conv2d(in_channels + 1, channels[0], 3, padding=1)
        self.unet = ResUNet(channels, n_blocks)
        self.tail = nn.Conv2d(channels[0], in_channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the plain push-pull fill
        nn.init.zeros_(self.tail.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (N, C, H, W) in [0, 1], mask (N, 1, H, W) with 1 = hole; H, W multiples of 2**levels."""
        self._check_size(image)
        known = image * (1 - mask)
        base = push_pull_fill(image, mask)
        pred = base + self.tail(self.unet(self.head(torch.cat([base * 2 - 1, mask], dim=1))))
        return known + pred.clamp(0, 1) * mask


register_model("inpaint-unet", UNetInpainter)
register_model("inpaint-gated-unet", GatedUNet)
