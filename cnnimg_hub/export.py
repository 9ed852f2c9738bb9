"""ONNX export of the image-to-image and classification models: float32, dynamic batch, height and width, checked
against PyTorch with ONNX Runtime on two input sizes.

    python -m cnnimg_hub export-onnx weights/sr-x4 sr-x4.onnx

Inputs of the graph (all float32): ``image`` (N, C, H, W) in [0, 1]; denoisers also take ``sigma`` (N,), the
noise level on the 0-255 scale; inpainters ``mask`` (N, 1, H, W) with 1 = hole. Output: ``output``, the restored
image (N, C, H*scale, W*scale for super-resolution) or the classifier's ``logits`` (N, classes). H and W must be
multiples of the config's ``multiple_of``. Needs ``onnx`` and ``onnxruntime`` (requirements-dev.txt).
"""
from __future__ import annotations

import copy
import io
import math
import random
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from .degrade import random_mask
from ._files import atomic_write
from .errors import CnnImgError

OPSET = 17
EXPORTABLE = ("super-resolution", "denoising", "inpainting", "image-classification")
TOLERANCE = 1e-3  # largest |ONNX Runtime - PyTorch| accepted, relative to the output's largest magnitude (>= 1)


class OnnxGraph(nn.Module):
    """The exported forward: tensors in, one tensor out, whatever the task."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.task = model, model.task

    def forward(self, image: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.task in ("denoising", "inpainting"):
            return self.model(image, extra)  # sigma (N,) or mask (N, 1, H, W)
        return self.model(image)


def to_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], f: str | Path | BinaryIO, **kwargs) -> None:
    """torch.onnx.export (TorchScript exporter, opset OPSET) of an eval-mode copy of `module`; `kwargs` go to
    torch.onnx.export (input_names, dynamic_axes, ...). The benchmarks export through here too."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python code
        torch.onnx.export(copy.deepcopy(module).eval(), inputs, f, dynamo=False, opset_version=OPSET, **kwargs)


def example_inputs(model: nn.Module, batch: int, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Named float32 inputs of the graph for `model` at this size."""
    g = torch.Generator().manual_seed(seed)
    channels = int(getattr(model, "in_channels", 3))
    inputs = {"image": torch.rand(batch, channels, height, width, generator=g)}
    if model.task == "denoising":
        inputs["sigma"] = torch.linspace(10.0, 40.0, batch)
    if model.task == "inpainting":
        rng = random.Random(seed)
        inputs["mask"] = torch.stack([torch.from_numpy(random_mask(height, width, rng))[None] for _ in range(batch)])
    return inputs


def check_sizes(model: nn.Module) -> list[tuple[int, int, int]]:
    """Two (batch, height, width) the check runs at: different batches, sides and aspect ratios."""
    if model.task == "image-classification":
        side = int(model.image_size)
        return [(1, side, side), (3, side + 8, side + 16)]
    m = int(model.config.get("multiple_of", 1)) if hasattr(model, "config") else 1
    up = lambda n: m * math.ceil(n / m)  # noqa: E731
    return [(1, up(48), up(64)), (2, up(72), up(40))]


def export_onnx(model: nn.Module, path: str | Path) -> list[dict]:
    """Write `model` as an ONNX graph to `path` and check ONNX Runtime against PyTorch at two sizes.

    Returns one dict per checked size: {"shape", "max_abs_diff"}. Raises CnnImgError for a task that has no
    export, when onnx/onnxruntime are missing, or when a difference is over TOLERANCE.
    """
    if model.task not in EXPORTABLE:
        raise CnnImgError(f"export-onnx takes {', '.join(EXPORTABLE)} models; this one is for {model.task}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise CnnImgError("export-onnx needs onnx and onnxruntime: pip install -r requirements-dev.txt") from None
    model = copy.deepcopy(model).float().cpu().eval()
    graph = OnnxGraph(model)
    sizes = check_sizes(model)
    trace = example_inputs(model, 1, sizes[0][1], sizes[0][2])
    names = list(trace)
    spatial = {0: "batch", 2: "height", 3: "width"}
    axes = {n: ({0: "batch"} if n == "sigma" else spatial) for n in names}
    output = "logits" if model.task == "image-classification" else "output"
    axes[output] = {0: "batch"} if model.task == "image-classification" else \
        {0: "batch", 2: "out_height", 3: "out_width"}
    buf = io.BytesIO()
    to_onnx(graph, tuple(trace.values()), buf, input_names=names, output_names=[output], dynamic_axes=axes)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    results = []
    for i, (n, h, w) in enumerate(sizes):
        inputs = example_inputs(model, n, h, w, seed=i + 1)
        with torch.inference_mode():
            want = graph(*inputs.values()).numpy()
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
        if got.shape != want.shape:
            raise CnnImgError(f"ONNX Runtime gave shape {got.shape} for input {tuple(inputs['image'].shape)}, "
                              f"PyTorch {want.shape}: the graph is not dynamic in height and width")
        diff = float(np.abs(got - want).max())
        results.append({"shape": list(inputs["image"].shape), "max_abs_diff": diff})
        if diff > TOLERANCE * max(1.0, float(np.abs(want).max())):
            raise CnnImgError(f"ONNX Runtime differs from PyTorch by {diff:.3g} at input {tuple(inputs['image'].shape)}"
                              f" (over {TOLERANCE:g}); the graph was not written")
    atomic_write(path, buf.getvalue())
    return results
