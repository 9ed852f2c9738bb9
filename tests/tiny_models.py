"""Tiny models of every registered family and one forward pass of each: shared by the model, Hub and publishing
tests (a helper module, not a test file)."""
import torch

from cnnimg_hub import create_model

# small overrides so every family runs in milliseconds on a CPU
TINY = {
    "classifier-resnet": dict(widths=[8, 8, 8]), "classifier-cifar10": dict(widths=[8, 8, 8]),
    "classifier-fashion-mnist": dict(widths=[8, 8]), "classifier-airbench": dict(widths=[8, 8]),
    "classifier-airbench-cifar10": dict(widths=[8, 8, 8]), "classifier-airbench-fashion-mnist": dict(widths=[8, 8]),
    "generator-dcgan": dict(base_channels=8),
    "generator-vae": dict(base_channels=8), "sr-espcn": dict(n_feats=8, n_layers=1),
    "sr-edsr-baseline": dict(n_feats=8, n_resblocks=1), "sr-edsr-small": dict(n_feats=8, n_resblocks=1),
    "inpaint-gated-unet": dict(base_channels=8, depth=2), "denoise-ffdnet": dict(n_feats=8, n_layers=3),
    "denoise-ffdnet-small": dict(n_feats=8, n_layers=3), "denoise-unet": dict(channels=[8, 8, 8], n_blocks=1),
    "inpaint-unet": dict(channels=[8, 8, 8], n_blocks=1),
}


def tiny(name: str, **kw):
    torch.manual_seed(0)
    model = create_model(name, **{**TINY.get(name, {}), **kw}).eval()
    with torch.no_grad():  # untrained SR/denoise nets start as exact bicubic/identity: make outputs depend on weights
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.01)
    return model


def run(model) -> torch.Tensor:
    """One forward pass on a fixed input of the right kind; returns a tensor to compare."""
    torch.manual_seed(1)
    if model.task == "image-classification":
        return model(torch.rand(2, model.in_channels, model.image_size, model.image_size))
    if model.task == "image-generation":
        return model.generate(torch.tensor([0, 3]), generator=torch.Generator().manual_seed(0))
    if model.task == "super-resolution":
        return model(torch.rand(1, 3, 10, 12))
    if model.task == "inpainting":
        return model(torch.rand(1, 3, 16, 24), (torch.rand(1, 1, 16, 24) > 0.7).float())
    return model(torch.rand(1, 3, 16, 20), 25.0)
