"""CNN classifiers for small images (CIFAR-10 32x32 RGB, Fashion-MNIST 28x28 gray).

- `AirbenchNet` (the shipped models): Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU"
  (airbench, 2024): a frozen-statistics 2x2 whitening conv, then three blocks of conv -> max-pool -> BN -> GELU
  -> conv -> BN -> GELU, global max-pool and a scaled linear head. The whitening weights are set from the
  training images' patch covariance by the training script; BN scales are fixed at 1 (only shifts learn).
- `ResNetClassifier`: the first design, after Page's ResNet-9 ("How to train your ResNet", 2018): a conv stem,
  then stages of conv -> max-pool -> BN -> GELU followed by residual conv blocks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


class AirbenchNet(HubModel, tags=["image-classification", "cnn", "airbench"]):
    """airbench94-style CNN (Jordan, 2024).

    Args:
        in_channels: 3 for RGB, 1 for gray. Default 3.
        num_classes: number of output classes. Default 10.
        image_size: side of the square input the model was trained on. Default 32.
        widths: channels of each block (each block halves the size). Default [64, 256, 256].
        whiten_kernel: side of the whitening conv (no padding; 2 * in_channels * k * k filters). Default 2.
        logit_scale: the head's output multiplier (airbench: 1/9). Default 0.1111.
        label_names: class names in output order (length `num_classes`). Default: "class_0", ...
        mean, std: per-channel normalisation applied inside the model to inputs in [0, 1].
            Default 0.5 / 0.25 for every channel.
    """

    task = "image-classification"

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32,
                 widths: list[int] = (64, 256, 256), whiten_kernel: int = 2, logit_scale: float = 1 / 9,
                 label_names: list[str] | None = None, mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        widths = list(widths)
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names for {num_classes} classes")
        self.label_names = list(label_names or [f"class_{i}" for i in range(num_classes)])
        self.image_size, self.in_channels, self.logit_scale = image_size, in_channels, logit_scale
        self.register_buffer("mean", torch.tensor(mean or [0.5] * in_channels).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or [0.25] * in_channels).view(1, -1, 1, 1), persistent=False)
        k = whiten_kernel
        self.whiten = nn.Conv2d(in_channels, 2 * in_channels * k * k, k)
        self.blocks = nn.Sequential(*(_AirBlock(a, b) for a, b in zip([self.whiten.out_channels] + widths, widths)))
        self.head = nn.Linear(widths[-1], num_classes, bias=False)

    def inference_spec(self) -> InferenceSpec:
        return InferenceSpec(self.task, input_size=[self.in_channels, self.image_size, self.image_size],
                             input_range=[0, 1], color_mode="RGB" if self.in_channels == 3 else "L",
                             interpolation="bicubic", crop="center", output="logits")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) in [0, 1] -> pooled features (N, widths[-1]); the space our generator FID uses."""
        x = self.blocks(F.gelu(self.whiten((x - self.mean) / self.std)))
        return torch.amax(x, dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) in [0, 1] -> logits (N, num_classes)."""
        return self.head(self.features(x)) * self.logit_scale


def _bn(c: int) -> nn.BatchNorm2d:
    """airbench's BN: scale fixed at 1 (not trained), fast running statistics, tiny eps."""
    bn = nn.BatchNorm2d(c, momentum=0.4, eps=1e-12)
    bn.weight.requires_grad_(False)
    return bn


class _AirBlock(nn.Module):
    """conv (cin -> cout) -> 2x2 max-pool -> BN -> GELU -> conv -> BN -> GELU; convs start as identity (dirac)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.Conv2d(cout, cout, 3, padding=1,
                                                                                          bias=False)
        self.norm1, self.norm2 = _bn(cout), _bn(cout)
        for conv in (self.conv1, self.conv2):
            w = conv.weight.data
            nn.init.dirac_(w[:w.size(1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


register_model("classifier-airbench", AirbenchNet)
register_model("classifier-airbench-cifar10", AirbenchNet, label_names=CIFAR10_LABELS,
               mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
register_model("classifier-airbench-fashion-mnist", AirbenchNet, in_channels=1, image_size=28,
               label_names=FASHION_MNIST_LABELS, mean=[0.2860], std=[0.3530])
register_model("classifier-resnet", ResNetClassifier)
register_model("classifier-cifar10", ResNetClassifier, in_channels=3, image_size=32, widths=[24, 48, 96, 192],
               label_names=CIFAR10_LABELS, mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
register_model("classifier-fashion-mnist", ResNetClassifier, in_channels=1, image_size=28, widths=[24, 48, 96],
               label_names=FASHION_MNIST_LABELS, mean=[0.2860], std=[0.3530])
