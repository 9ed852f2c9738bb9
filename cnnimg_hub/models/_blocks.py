"""Building blocks shared by more than one model family (timm keeps these in `layers/`)."""
from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), bias-free as in DRUNet (Zhang et al., 2021): the block stays scale-equivariant."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.ReLU(True),
                                  nn.Conv2d(ch, ch, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResUNet(nn.Module):
    """The U-Net trunk of DRUNet: per level `n_blocks` residual blocks then a 2x2 stride-2 conv down; residual blocks
    at the bottom; a 2x2 transposed conv up, the skip added, residual blocks. `channels[0]` features in and out at
    full resolution; inputs must be multiples of 2 ** (len(channels) - 1)."""

    def __init__(self, channels: list[int], n_blocks: int):
        super().__init__()
        ch, levels = list(channels), len(channels) - 1
        self.down = nn.ModuleList(
            nn.Sequential(*(ResBlock(ch[i]) for _ in range(n_blocks)), nn.Conv2d(ch[i], ch[i + 1], 2, 2, bias=False))
            for i in range(levels))
        self.body = nn.Sequential(*(ResBlock(ch[-1]) for _ in range(n_blocks)))
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, 2, bias=False) for i in reversed(range(levels)))
        self.up_blocks = nn.ModuleList(nn.Sequential(*(ResBlock(ch[i]) for _ in range(n_blocks)))
                                       for i in reversed(range(levels)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.body(h)
        for up, blocks, skip in zip(self.up, self.up_blocks, reversed(skips)):
            h = blocks(up(h) + skip)
        return h
