"""Compact residual CNN classifier for small images (CIFAR-10 32x32 RGB, Fashion-MNIST 28x28 gray).

Design after the fast CIFAR-10 training nets (Page's ResNet-9 "How to train your ResNet", 2018; Keller Jordan's
airbench, 2024): a conv stem, then stages of conv -> max-pool -> BN -> GELU followed by residual conv blocks,
global max-pool and a linear head. Small, BN-regularised, fast to train on a CPU.
"""
from __future__ import annotations

import torch
from torch import nn

from .._registry import register_model
from ..spec import InferenceSpec
from ._base import HubModel

CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                        "Bag", "Ankle boot"]


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class Stage(nn.Module):
    """conv (cin->cout) -> 2x2 max-pool -> BN -> GELU, then `depth` residual blocks of two 3x3 convs."""

    def __init__(self, cin: int, cout: int, depth: int):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                                  nn.BatchNorm2d(cout), nn.GELU())
        self.blocks = nn.ModuleList(nn.Sequential(conv_bn(cout, cout), conv_bn(cout, cout)) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        for block in self.blocks:
            x = x + block(x)
        return x


class ResNetClassifier(HubModel, tags=["image-classification", "cnn"]):
    """Residual CNN classifier.

    Args:
        in_channels: 3 for RGB, 1 for gray. Default 3.
        num_classes: number of output classes. Default 10.
        image_size: side of the square input the model was trained on. Default 32.
        widths: channels of the stem and of each stage (len(widths) - 1 stages, each halving the size).
            Default [32, 64, 128, 256].
        depth: residual blocks per stage. Default 1.
        label_names: class names in output order (length `num_classes`). Default: "class_0", ...
        mean, std: per-channel normalisation applied inside the model to inputs in [0, 1].
            Default 0.5 / 0.25 for every channel.
        dropout: dropout before the head. Default 0.0.
    """

    task = "image-classification"

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                 widths: list[int] = (32, 64, 128, 256), depth: int = 1, label_names: list[str] | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None, dropout: float = 0.0):
        super().__init__()
        widths = list(widths)
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names for {num_classes} classes")
        self.label_names = list(label_names or [f"class_{i}" for i in range(num_classes)])
        self.image_size = image_size
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(mean or [0.5] * in_channels).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or [0.25] * in_channels).view(1, -1, 1, 1), persistent=False)
        self.stem = conv_bn(in_channels, widths[0])
        self.stages = nn.Sequential(*(Stage(a, b, depth) for a, b in zip(widths[:-1], widths[1:])))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], num_classes)

    def inference_spec(self) -> InferenceSpec:
        return InferenceSpec(self.task, input_size=[self.in_channels, self.image_size, self.image_size],
                             input_range=[0, 1], color_mode="RGB" if self.in_channels == 3 else "L",
                             interpolation="bicubic", crop="center", output="logits")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) in [0, 1] -> pooled features (N, widths[-1]); the space our generator FID uses."""
        x = self.stages(self.stem((x - self.mean) / self.std))
        return torch.amax(x, dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) in [0, 1] -> logits (N, num_classes)."""
        return self.head(self.dropout(self.features(x)))


register_model("classifier-resnet", ResNetClassifier)
register_model("classifier-cifar10", ResNetClassifier, in_channels=3, image_size=32, widths=[24, 48, 96, 192],
               label_names=CIFAR10_LABELS, mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
register_model("classifier-fashion-mnist", ResNetClassifier, in_channels=1, image_size=28, widths=[24, 48, 96],
               label_names=FASHION_MNIST_LABELS, mean=[0.2860], std=[0.3530])
