"""The model families. Each file registers its variants; they are imported explicitly, never discovered."""
from . import classifier, denoiser, generator, inpainting, super_resolution  # noqa: F401
from .classifier import AirbenchNet, ResNetClassifier
from .denoiser import FFDNet
from .generator import ConditionalGenerator, ConditionalVAE
from .inpainting import GatedUNet
from .super_resolution import EDSR, ESPCN

__all__ = ["AirbenchNet", "ResNetClassifier", "ConditionalGenerator", "ConditionalVAE", "ESPCN", "EDSR", "GatedUNet", "FFDNet"]
