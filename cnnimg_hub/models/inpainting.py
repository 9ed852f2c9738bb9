"""Image inpainting with a gated-convolution U-Net.

Paper: Yu et al., "Free-Form Image Inpainting with Gated Convolution" (DeepFill v2, ICCV 2019); U-Net after
Ronneberger et al. (2015). Mask convention: 1 = hole (pixels to fill), 0 = known. The network sees the image with
its holes zeroed and the mask; its output is composited so known pixels pass through unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import register_model
from ._base import HubModel


class GatedConv(nn.Module):
    """y = ELU(conv_f(x)) * sigmoid(conv_g(x)): the gate learns where features are valid (outside holes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, stride=stride, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.conv(x).chunk(2, dim=1)
        return F.elu(f) * torch.sigmoid(g)


class GatedUNet(HubModel, tags=["inpainting", "gated-convolution", "unet"]):
    """U-Net of gated convolutions with a dilated bottleneck.

    Args:
        in_channels: image channels. Default 3.
        base_channels: channels at full resolution, doubled per level (capped at 4x). Default 24.
        depth: number of stride-2 levels; inputs are padded to a multiple of 2**depth. Default 3.
        dilations: dilation rates of the bottleneck convs (they widen the receptive field). Default [2, 4, 8].
    """

    task = "inpainting"

    def __init__(self, in_channels: int = 3, base_channels: int = 24, depth: int = 3,
                 dilations: list[int] = (2, 4, 8)):
        super().__init__()
        self.in_channels, self.depth = in_channels, depth
        ch = [base_channels * min(2 ** i, 4) for i in range(depth + 1)]
        self.stem = GatedConv(in_channels + 1, ch[0])
        self.down = nn.ModuleList(nn.Sequential(GatedConv(ch[i], ch[i + 1], stride=2), GatedConv(ch[i + 1], ch[i + 1]))
                                  for i in range(depth))
        self.bottleneck = nn.Sequential(*(GatedConv(ch[-1], ch[-1], dilation=d) for d in dilations))
        self.up = nn.ModuleList(nn.Sequential(GatedConv(ch[i + 1] + ch[i], ch[i]), GatedConv(ch[i], ch[i]))
                                for i in reversed(range(depth)))
        self.out = nn.Conv2d(ch[0], in_channels, 3, padding=1)

    def inference_config(self) -> dict:
        m = 2 ** self.depth
        return {"input_range": [0, 1], "color_mode": "RGB" if self.in_channels == 3 else "L",
                "mask_convention": "1 = hole (pixels to fill), 0 = known", "min_size": 2 * m, "multiple_of": m,
                "tile_size": 512, "tile_overlap": 64}

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (N, C, H, W) in [0, 1], mask (N, 1, H, W) with 1 = hole; H, W multiples of 2**depth."""
        m = 2 ** self.depth
        if image.shape[-2] % m or image.shape[-1] % m:
            raise ValueError(f"height and width must be multiples of {m}; pad the input first")
        known = image * (1 - mask)
        h = self.stem(torch.cat([known, mask], dim=1))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for up, skip in zip(self.up, reversed(skips)):
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = up(torch.cat([h, skip], dim=1))
        pred = torch.sigmoid(self.out(h))
        return known + pred * mask


register_model("inpaint-gated-unet", GatedUNet)
